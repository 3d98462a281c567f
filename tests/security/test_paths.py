"""Path confusion over raw sockets: the rule that decides is the rule for the path the upstream routes.

Werkzeug decodes escapes once and merges `//`; yarl would resolve `..`.  Every
spelling below either reaches the upstream as the one canonical path the
route table judged, or is refused with a 400 JSON before anything is
forwarded.
"""
import pytest

from tests.security.stack import assert_refused, echoed

AMBIGUOUS = {
    "encoded slash": "/admin%2Fx",
    "encoded slash lower": "/public/..%2fadmin",
    "dot-dot": "/user/../admin",
    "dot-dot at end": "/public/..",
    "encoded dot-dot": "/user/%2e%2e/admin",
    "encoded dot-dot upper": "/user/%2E%2E/admin",
    "half encoded dot-dot": "/user/.%2e/admin",
    "dot segment": "/public/./x",
    "encoded dot segment": "/public/%2e/x",
    "overlong utf-8 dot-dot": "/public/%C0%AE%C0%AE/admin",
    "path parameter": "/admin;x",
    "path parameter in segment": "/public/x;jsessionid=1/../admin",
    "encoded semicolon": "/public/x%3Bx",
    "fragment": "/public/x#/../../admin",
    "fragment in query": "/public/x?a=1#/admin",
    "backslash": "/public\\..\\admin",
    "encoded backslash": "/public/..%5Cadmin",
    "nul": "/public/x%00.json",
    "encoded control": "/public/x%0d%0aX-Auth-Subject:%20admin",
    "invalid utf-8": "/public/%FF",
    "truncated utf-8": "/public/%E2%82",
    "bad escape": "/public/%zz",
    "truncated escape": "/public/%4",
    "absolute-form, other host": "http://evil.test/admin",
    "absolute-form, other host, public path": "http://evil.test/public/x",
    "absolute-form, https": "https://evil.test:8443/public/x",
}


@pytest.mark.parametrize("case", sorted(AMBIGUOUS))
async def test_ambiguous_targets_are_400_json_and_never_forwarded(stack, case):
    answer = await stack.get(AMBIGUOUS[case], token=stack.token("read:admin"))
    assert_refused(answer, 400, "invalid_path")
    assert stack.echo.hits == 0


async def test_connect_and_authority_form_are_refused(stack):
    assert_refused(await stack.request("CONNECT", "evil.test:443"), 400, "invalid_path")
    assert_refused(await stack.request("CONNECT", "127.0.0.1:%d" % stack.echo.port), 400, "invalid_path")
    assert stack.echo.hits == 0


async def test_parser_level_refusals_never_reach_upstream(stack):
    """Bytes the HTTP parser refuses (raw controls, raw non-ASCII, tabs) are a JSON 400 before routing."""
    for target in (b"*", b"evil.test:443", b"/public/a\x01b", b"/public/\xc3\xa9", b"/public/\xff",
                   b"/public/a\x7f", b"/public/a\tb"):
        answer = await stack.raw(b"GET " + target + b" HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        assert_refused(answer, 400)
    assert stack.echo.hits == 0


ROUTED = {
    # target: (status without token, canonical path the upstream must see with an admin token)
    "/%61dmin": (401, "/admin"),
    "/%61%64%6d%69%6e/x": (401, "/admin/x"),
    "//admin": (401, "/admin"),
    "///admin//x": (401, "/admin/x"),
    "/admin/": (401, "/admin/"),
    "/%7Euser": (404, None),
    "/user%2Dx": (404, None),
    "/Admin": (404, None),
    "/ADMIN/x": (404, None),
    "/administrator": (404, None),
    "/admin-old": (404, None),
    "/adminx/y": (404, None),
    "/public%2Fx": (400, None),
}


@pytest.mark.parametrize("target", sorted(ROUTED))
async def test_each_spelling_is_judged_as_the_path_upstream_routes(stack, target):
    status, canonical = ROUTED[target]
    assert (await stack.get(target)).status == status
    assert stack.echo.hits == 0
    if canonical is not None:
        assert_refused(await stack.get(target, token=stack.token("read:user")), 403, "insufficient_scope")
        assert echoed(await stack.get(target, token=stack.token("read:admin")))["target"] == canonical


async def test_double_encoding_is_forwarded_once_encoded(stack):
    """`%252e%252e` is a literal `%2e%2e` segment to Werkzeug (it decodes once), so it stays as sent."""
    seen = echoed(await stack.get("/public/%252e%252e/admin"))
    assert seen["target"] == "/public/%252e%252e/admin"


async def test_upstream_url_is_not_normalised_by_the_client_library(stack):
    """yarl, used naively, rewrites `%3A` to `:` and resolves dot segments; the gateway must not.

    `%5B`/`%22` stay escaped (not allowed raw in a path), and the query goes
    through byte for byte including escapes yarl would re-quote.
    """
    target = "/public/a%5Bb%5D/%22q%22/%E2%82%AC?a=%7e&b=x%2Fy&c=d+e&d=%zz&e=%2e%2e/&&f"
    seen = echoed(await stack.get(target))
    assert seen["target"] == target


async def test_sub_delimiters_have_one_spelling(stack):
    """`%3A` and `:` are the same path to Werkzeug, so they must be one path to the route table too."""
    raw = echoed(await stack.get("/public/a:b@c!$&'()*+,="))["target"]
    encoded = echoed(await stack.get("/public/a%3Ab%40c%21%24%26%27%28%29%2A%2B%2C%3D"))["target"]
    assert raw == encoded == "/public/a:b@c!$&'()*+,="


async def test_a_protected_route_spelt_with_reserved_characters_cannot_be_reached_by_escaping(rsa_key, ec_key):
    """Route `/a:b` (protected) before a public catch-all: `/a%3Ab` must still hit the protected rule."""
    from tests.security.stack import running_stack

    routes = ("  - path: /files/report:2024\n    access:\n      scopes: [read:admin]\n"
              "  - path: /café\n    access:\n      scopes: [read:admin]\n"
              "  - path: /**\n    access: public\n")
    async with running_stack(rsa_key, ec_key, routes=routes) as stack:
        for target in ("/files/report:2024", "/files/report%3A2024", "/files/report%3a2024",
                       "/caf%C3%A9", "/caf%c3%a9"):
            assert_refused(await stack.get(target), 401, "authorization_header_missing")
        assert stack.echo.hits == 0
        seen = echoed(await stack.get("/caf%c3%a9", token=stack.token("read:admin")))
        assert seen["target"] == "/caf%C3%A9"


async def test_lower_case_method_cannot_dodge_a_method_specific_rule(stack):
    """Werkzeug upper-cases the method, so `delete` must not slip past the DELETE rule to the catch-all.

    aiohttp's C parser refuses methods that are not upper-case tokens it knows, before the gateway runs.
    """
    user = stack.token("read:admin")  # may read, may not delete
    assert_refused(await stack.request("DELETE", "/admin/x", token=user), 403, "insufficient_scope")
    for method in ("delete", "Delete", "dELETE"):
        assert (await stack.request(method, "/admin/x", token=user)).status == 400
    assert stack.echo.hits == 0


async def test_x_original_url_and_friends_do_not_route(stack):
    headers = [("X-Original-URL", "/admin/x"), ("X-Rewrite-URL", "/admin/x"), ("X-Forwarded-Prefix", "/admin"),
               ("X-Forwarded-Path", "/admin/x"), ("X-Forwarded-Uri", "/admin/x"), ("X-Envoy-Original-Path", "/admin")]
    seen = echoed(await stack.get("/public/x", headers=headers))
    assert seen["target"] == "/public/x"
    forwarded = {name.lower() for name, _ in seen["headers"]}
    assert not forwarded & {name.lower() for name, _ in headers}, forwarded
    assert_refused(await stack.get("/admin/x", headers=[("X-Original-URL", "/public/x")]), 401)
