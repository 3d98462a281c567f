"""Header attacks over raw sockets: forged identity, hop-by-hop tricks, ambiguous auth, oversized input."""
import base64
import json

import pytest

from tests.security.stack import assert_refused, echoed, header_values

SPOOFED_NAMES = [
    "X-Auth-Subject", "x-auth-subject", "X-AUTH-SUBJECT", "X_Auth_Subject", "x_auth_subject", "X-Auth_Subject",
    "X-Auth-Scopes", "x_auth_scopes", "X-Auth-Issuer", "X-Auth-Claims", "X-Auth-Anything-Else", "X-User-Email",
    "x_user_email", "X-USER-EMAIL",
]
OURS = ("x-auth-subject", "x-auth-issuer", "x-auth-scopes", "x-auth-claims", "x-user-email")


def _identity_headers(record: dict) -> list[tuple[str, str]]:
    return [(k, v) for k, v in record["headers"] if k.lower().replace("_", "-") in OURS
            or k.lower().replace("_", "-").startswith("x-auth-")]


@pytest.mark.parametrize("target", ["/public/x", "/"])
async def test_spoofed_identity_headers_never_reach_a_public_route(stack, target):
    forged = [(name, "admin read:admin") for name in SPOOFED_NAMES]
    seen = echoed(await stack.get(target, headers=forged))
    assert _identity_headers(seen) == []


async def test_protected_route_sees_only_the_gateways_identity(stack):
    forged = [(name, "mallory") for name in SPOOFED_NAMES]
    token = stack.token("read:user", sub="alice", email="alice@example.test")
    seen = echoed(await stack.get("/user/x", headers=forged, token=token))
    got = sorted((k.lower(), v) for k, v in _identity_headers(seen))
    assert [k for k, _ in got] == sorted(OURS)
    values = dict(got)
    assert values["x-auth-subject"] == "alice" and values["x-auth-scopes"] == "read:user"
    assert values["x-user-email"] == "alice@example.test"
    assert json.loads(base64.urlsafe_b64decode(values["x-auth-claims"] + "==="))["sub"] == "alice"


async def test_connection_header_cannot_remove_what_the_gateway_adds(stack):
    """Traefik CVE-2021-32813: a client listing X-Auth-Subject in Connection made the proxy drop it."""
    token = stack.token("read:user", sub="alice", email="alice@example.test")
    listed = "close, X-Auth-Subject, X-Auth-Scopes, X-Auth-Claims, X-Auth-Issuer, X-User-Email, X-Forwarded-For"
    for connection in (listed, listed.lower(), listed.replace("-", "_")):
        seen = echoed(await stack.get("/user/x", headers=[("Connection", connection)], token=token))
        assert header_values(seen, "X-Auth-Subject") == ["alice"]
        assert header_values(seen, "X-Auth-Scopes") == ["read:user"]
        assert header_values(seen, "X-User-Email") == ["alice@example.test"]
        assert len(header_values(seen, "X-Auth-Claims")) == 1
        assert header_values(seen, "X-Forwarded-For") == ["127.0.0.1"]
        assert header_values(seen, "Connection") in ([], ["keep-alive"], ["close"])


async def test_client_forwarding_headers_are_replaced_not_trusted(stack):
    forged = [("X-Forwarded-For", "10.0.0.1"), ("X_Forwarded_For", "10.0.0.2"), ("Forwarded", "for=10.0.0.3"),
              ("X-Forwarded-Host", "admin.internal"), ("X-Forwarded-Proto", "https"), ("X-Real-IP", "10.0.0.4"),
              ("X-Forwarded-Port", "443"), ("X-Client-IP", "10.0.0.5")]
    seen = echoed(await stack.get("/public/x", headers=forged))
    assert header_values(seen, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(seen, "X-Forwarded-Proto") == ["http"]
    assert header_values(seen, "X-Forwarded-Host") == ["gw.test"]
    for name in ("X_Forwarded_For", "X-Real-IP", "X-Forwarded-Port", "X-Client-IP"):
        assert header_values(seen, name) == [], name
    leaked = [(k, v) for k, v in seen["headers"] if "10.0.0." in v or "admin.internal" in v or v in ("https", "443")]
    assert leaked == []  # the gateway may add its own Forwarded, never pass the client's on


async def test_authorization_is_not_forwarded_by_default(stack):
    seen = echoed(await stack.get("/user/x", token=stack.token()))
    assert header_values(seen, "Authorization") == []


AMBIGUOUS_AUTH = {
    "two headers": lambda t: [("Authorization", f"Bearer {t}"), ("Authorization", f"Bearer {t}")],
    "two headers, second garbage": lambda t: [("Authorization", f"Bearer {t}"), ("Authorization", "Bearer x.y.z")],
    "two spellings": lambda t: [("Authorization", f"Bearer {t}"), ("authorization", "Basic YTpi")],
    "two tokens in one header": lambda t: [("Authorization", f"Bearer {t}, Bearer {t}")],
    "two tokens space separated": lambda t: [("Authorization", f"Bearer {t} {t}")],
    "scheme twice": lambda t: [("Authorization", f"Bearer Bearer {t}")],
}


@pytest.mark.parametrize("case", sorted(AMBIGUOUS_AUTH))
async def test_ambiguous_authorization_is_refused(stack, case):
    token = stack.token("read:admin")
    assert_refused(await stack.get("/admin/x", headers=AMBIGUOUS_AUTH[case](token)), 401, "invalid_header")
    assert stack.echo.hits == 0


async def test_tokens_outside_the_authorization_header_are_never_read(stack):
    """Only the header counts: a token in the query string or a cookie is no credential (no ambiguity to resolve)."""
    token = stack.token("read:admin")
    for target, headers in ((f"/admin/x?access_token={token}", []),
                            ("/admin/x", [("Cookie", f"access_token={token}; token={token}")])):
        assert_refused(await stack.get(target, headers=headers), 401, "authorization_header_missing")
    assert stack.echo.hits == 0


@pytest.mark.parametrize("claim", ["sub", "email"])
@pytest.mark.parametrize("value", ["alice\r\nX-Auth-Scopes: read:admin", "alice\nx", "alice\rx", "a\x00b",
                                   "a\x7fb", "a\tb", "a\x1bb"])
async def test_control_characters_in_header_claims_reject_the_token(stack, claim, value):
    token = stack.token("read:user", **{claim: value})
    assert_refused(await stack.get("/user/x", token=token), 401, "invalid_claims")
    assert stack.echo.hits == 0


async def test_control_characters_in_scopes_reject_the_token(stack):
    for scope in ("read:user\r\nX-Auth-Subject: root", ["read:user", "read:admin\nx"]):
        extra = {"scope": scope} if isinstance(scope, str) else {"scp": scope}
        assert_refused(await stack.get("/user/x", token=stack.token(**extra)), 401, "invalid_claims")
    assert stack.echo.hits == 0


async def test_non_ascii_claims_are_forwarded_as_utf8_not_a_500(stack):
    token = stack.token("read:user", sub="ålice ☃", email="ä@example.test")
    answer = await stack.get("/user/x", token=token)
    assert answer.status == 200, answer.body[:300]


async def test_claims_header_is_base64url_so_any_payload_is_safe(stack):
    token = stack.token("read:user", note="line1\r\nX-Auth-Subject: root\x00")
    seen = echoed(await stack.get("/user/x", token=token))
    (claims_header,) = header_values(seen, "X-Auth-Claims")
    assert set(claims_header) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert header_values(seen, "X-Auth-Subject") == ["alice"]


async def test_oversized_token_is_401_before_parsing(stack):
    padding = "a" * 9000
    assert_refused(await stack.get("/user/x", token=f"{padding}.{padding}.{padding}"[:12000]), 401, "invalid_header")
    token = stack.token("read:user", filler="x" * 7000)
    assert_refused(await stack.get("/user/x", token=token), 401, "invalid_header")


async def test_oversized_header_line_and_header_count_are_refused_by_the_parser(stack):
    big = "A" * 20000
    assert_refused(await stack.get("/public/x", headers=[("X-Big", big)]), 431)
    assert_refused(await stack.get("/user/x", headers=[("Authorization", "Bearer " + big)]), 431)
    many = [(f"X-H{i}", "v") for i in range(150)]
    assert_refused(await stack.get("/public/x", headers=many), 431)
    assert stack.echo.hits == 0
    assert (await stack.get("/public/x")).status == 200  # and the gateway is still fine


async def test_too_many_segments_and_jwe_are_401(stack):
    token = stack.token()
    for bad in (token + ".x", token + ".x.y", ".".join([token] * 3), "a." * 500 + "a", "a.b", "a"):
        assert_refused(await stack.get("/user/x", token=bad), 401, "invalid_header")


async def test_token_in_two_places_is_refused_never_first_one_wins(rsa_key, ec_key):
    """Where a route lets tokens come from a query parameter or cookie too, two of them is ambiguity: refused."""
    from tests.security.stack import running_stack

    routes = ("  - path: /stream/**\n    access: authenticated\n"
              "    token_from: [header, 'query:access_token', 'cookie:session']\n    methods: [GET]\n")
    async with running_stack(rsa_key, ec_key, routes=routes) as stack:
        good, admin = stack.token("read:user"), stack.token("read:admin")
        bearer = [("Authorization", f"Bearer {good}")]
        assert echoed(await stack.get("/stream/x", headers=bearer))  # each place alone works
        assert echoed(await stack.get(f"/stream/x?access_token={good}"))
        assert echoed(await stack.get("/stream/x", headers=[("Cookie", f"session={good}")]))
        hits = stack.echo.hits
        for target, headers in ((f"/stream/x?access_token={admin}", bearer),
                                ("/stream/x", bearer + [("Cookie", f"session={admin}")]),
                                (f"/stream/x?access_token={good}", [("Cookie", f"session={good}")]),
                                (f"/stream/x?access_token={good}&access_token={admin}", []),
                                ("/stream/x", [("Cookie", f"session={good}; session={admin}")]),
                                ("/stream/x", [("Cookie", f"session={good}"), ("Cookie", f"session={admin}")])):
            answer = await stack.get(target, headers=headers)
            assert answer.status in (400, 401) and answer.is_json, (target, headers, answer.status)
        assert stack.echo.hits == hits
