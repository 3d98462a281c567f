"""Issue 12 item 8: cookie tokens on routes that take unsafe methods need `csrf_origins`, checked per request.

A browser attaches the session cookie to a POST a foreign page makes it send; the Authorization header it never
attaches on its own.  So such a route is refused at load without the list of origins allowed to send unsafe
requests, and an unsafe request carrying the token cookie must show one of them in Origin (else Referer).
"""
import aiohttp
import pytest

from gateway.config.loader import ConfigError, build_config
from gateway.config.yaml_source import load_located
from tests.support.config import REPO, config_text, provider_yaml
from tests.support.gateway import running_gateway
from tests.support.keys import claims

APP = "https://app.example.com"


def session_route(methods: str | None, extra: str = "", token_from: str = "[cookie:session]") -> str:
    lines = ["  - path: /session", f"    token_from: {token_from}", "    access: authenticated"]
    if methods is not None:
        lines.insert(1, f"    methods: {methods}")
    return "\n".join(lines) + "\n" + "".join(f"    {line}\n" for line in extra.splitlines())


def build(routes: str):
    text = config_text("http://127.0.0.1:5000", provider_yaml("https://k.test/j"), routes)
    return build_config(load_located(text, {}), "<t>", REPO)


@pytest.mark.parametrize("methods, allowed", [("[POST]", "POST"), ("[GET, DELETE, PATCH]", "DELETE, PATCH"),
                                              (None, "every method")])
def test_a_cookie_token_route_with_unsafe_methods_needs_csrf_origins(methods, allowed):
    """Before: it loaded, and any site could make a logged-in browser POST with the cookie."""
    with pytest.raises(ConfigError) as refused:
        build(session_route(methods))
    (problem,) = refused.value.problems
    assert problem.startswith("<t>:") and f"reads its token from a cookie and allows {allowed}" in problem
    assert "csrf_origins: [https://app.example.com]" in problem


@pytest.mark.parametrize("routes, message", [
    (session_route("[POST]", f"csrf_origins: [{APP}]", token_from="[header]"), "has no effect without a cookie"),
    (session_route("[POST]", "csrf_origins: ['https://app.example.com/path']"), "must be an exact origin"),
    (session_route("[POST]", "csrf_origins: ['*']"), "must be an exact origin"),
    (session_route("[POST]", "csrf_origins: [app.example.com]"), "must be an exact origin"),
])
def test_csrf_origins_where_it_means_nothing_or_is_no_origin_is_refused(routes, message):
    with pytest.raises(ConfigError) as refused:
        build(routes)
    assert any(message in p for p in refused.value.problems), refused.value.problems


def test_safe_only_cookie_routes_need_no_origins_and_may_list_them_for_websockets():
    assert build(session_route("[GET]")).routes.routes[0].csrf is None
    assert build(session_route("[GET]", f"csrf_origins: [{APP}]")).routes.routes[0].csrf.origins == {APP}


@pytest.fixture
async def session_gateway(provider, echo_upstream):
    routes = session_route("[GET, POST]", f"csrf_origins: [{APP}, 'HTTPS://Admin.Example.com:443']",
                           token_from="[header, cookie:session]")
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), routes)
    async with running_gateway(text) as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
        yield client


async def send(client, method, headers):
    async with client.request(method, "/session", headers=headers, data=b"x" if method == "POST" else None) as r:
        body = await r.json(content_type=None)
        return r.status, body.get("code"), r.headers.get("WWW-Authenticate")


@pytest.mark.parametrize("method, headers, expected", [
    ("POST", {"Origin": APP}, 200),
    ("POST", {"Origin": "https://admin.example.com"}, 200),  # configured as HTTPS://Admin.Example.com:443
    ("POST", {"Referer": f"{APP}/settings?x=1"}, 200),  # no Origin: the Referer's origin
    ("POST", {"Origin": "https://evil.example"}, 403),
    ("POST", {"Origin": "https://evil.example", "Referer": f"{APP}/"}, 403),  # Origin, when sent, decides
    ("POST", {"Origin": "null"}, 403),  # sandboxed frames, data: URLs
    ("POST", {"Origin": "http://app.example.com"}, 403),  # another scheme is another origin
    ("POST", {"Origin": "https://app.example.com.evil.example"}, 403),
    ("POST", {"Referer": "https://evil.example/?https://app.example.com"}, 403),
    ("POST", {}, 403),  # neither header
    ("GET", {"Origin": "https://evil.example"}, 200),  # safe methods are not checked
])
async def test_unsafe_requests_with_the_token_cookie_must_come_from_an_allowed_origin(
        session_gateway, echo_upstream, rsa_key, method, headers, expected):
    cookie = {"Cookie": f"session={rsa_key.sign(claims())}"}
    status, code, challenge = await send(session_gateway, method, {**cookie, **headers})
    assert status == expected
    if expected == 403:
        assert code == "csrf_origin_mismatch" and challenge is None
        assert echo_upstream.hits == 0  # never forwarded


async def test_a_header_token_needs_no_origin(session_gateway, rsa_key):
    """Browsers never attach Authorization on their own: API clients on the same route are not affected."""
    status, _, _ = await send(session_gateway, "POST", {"Authorization": f"Bearer {rsa_key.sign(claims())}"})
    assert status == 200


@pytest.mark.parametrize("methods, extra", [("[GET]", ""), ("[GET]", f"csrf_origins: [{APP}]"),
                                            ("[GET, POST]", f"csrf_origins: [{APP}]")])
async def test_a_websocket_opened_by_a_foreign_page_with_the_token_cookie_is_refused(
        provider, echo_upstream, rsa_key, methods, extra):
    """Cross-site WebSocket hijacking: the handshake is a GET, but the foreign page then reads and writes the socket
    as the user.  Before: upgraded and relayed whatever the Origin (the GET skipped the check)."""
    routes = session_route(methods, extra).replace("/session", "/ws")
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), routes)
    cookie = {"Cookie": f"session={rsa_key.sign(claims())}"}
    async with running_gateway(text) as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/ws", headers={**cookie, "Origin": "https://evil.example"})
        assert refused.value.status == 403
        assert echo_upstream.hits == 0
        for origin in ({"Origin": f"http://127.0.0.1:{gw.port}"}, {"Origin": APP} if extra else {}, {}):
            async with client.ws_connect("/ws", headers={**cookie, **origin}) as ws:  # its own page; a non-browser
                await ws.send_str("hi")
                assert (await ws.receive(timeout=5)).data == "echo:hi"
