"""Every decision of the core contract, through an in-process gateway in front of the real Flask app."""
import base64
import json

import aiohttp
import pytest
from yarl import URL

from tests.support import (
    AUDIENCE, DEFAULT_ROUTES, ISSUER, SigningKey, claims, config_text, provider_yaml, running_gateway,
    unsigned_token,
)


@pytest.fixture
async def gateway(provider, flask_upstream):
    text = config_text(flask_upstream, provider_yaml(provider.jwks_uri), DEFAULT_ROUTES)
    async with running_gateway(text) as gw:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as session:
            yield session


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def answer(response):
    return response.status, await response.json(content_type=None)


async def test_tutorial_walkthrough(gateway, rsa_key):
    async with gateway.get("/") as r:
        assert await answer(r) == (200, {"msg": "Hello world!"})
    async with gateway.get("/user") as r:
        status, body = await answer(r)
        assert status == 401 and body["code"] == "authorization_header_missing"
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    async with gateway.get("/user", headers=bearer(rsa_key.sign(claims("read:user")))) as r:
        assert await answer(r) == (200, {"msg": "Hello user!"})
    async with gateway.get("/admin", headers=bearer(rsa_key.sign(claims("read:user")))) as r:
        status, body = await answer(r)
        assert status == 403 and body["code"] == "insufficient_scope"
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="api", error="insufficient_scope"')
        assert 'scope="read:admin"' in r.headers["WWW-Authenticate"]
    async with gateway.get("/admin", headers=bearer(rsa_key.sign(claims("read:user read:admin")))) as r:
        assert await answer(r) == (200, {"msg": "Hello admin!"})


async def test_es256_tokens_verify(gateway, ec_key):
    async with gateway.get("/user", headers=bearer(ec_key.sign(claims()))) as r:
        assert r.status == 200


def _forged_hs256_with_public_key(key: SigningKey) -> str:
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    unsigned = unsigned_token(header, claims("read:admin")).rsplit(".", 1)[0]
    mac = hmac.new(key.public_pem().encode(), unsigned.encode(), hashlib.sha256).digest()
    return unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


REJECTIONS = {
    "wrong scheme": (lambda k: {"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_header"),
    "bearer without token": (lambda k: {"Authorization": "Bearer"}, "invalid_header"),
    "two tokens": (lambda k: {"Authorization": "Bearer a.b.c d.e.f"}, "invalid_header"),
    "garbage token": (lambda k: bearer("not-a-jwt"), "invalid_header"),
    "undecodable jwt": (lambda k: bearer("aaaa.bbbb.cccc"), "invalid_header"),
    "jwe": (lambda k: bearer("a.b.c.d.e"), "invalid_header"),
    "expired": (lambda k: bearer(k.sign(claims(ttl=-600))), "token_expired"),
    "wrong audience": (lambda k: bearer(k.sign(claims(audience="https://other.test"))), "invalid_claims"),
    "wrong issuer": (lambda k: bearer(k.sign(claims(issuer="https://evil.test/"))), "invalid_claims"),
    "not yet valid": (lambda k: bearer(k.sign(claims(nbf=int(__import__("time").time()) + 600))), "invalid_claims"),
    "no exp": (lambda k: bearer(k.sign({**claims(), "exp": None})), "invalid_claims"),
    "string exp": (lambda k: bearer(k.sign({**claims(), "exp": "9999999999"})), "invalid_claims"),
    "other key, same kid": (lambda k: bearer(SigningKey.rsa("rsa-1").sign(claims())), "invalid_signature"),
    "unknown kid": (lambda k: bearer(SigningKey.rsa("nope").sign(claims())), "invalid_signature"),
    "alg none": (lambda k: bearer(unsigned_token({"alg": "none", "kid": "rsa-1"}, claims(), b"s" * 32)), "invalid_header"),
    "hs256 with public key": (lambda k: bearer(_forged_hs256_with_public_key(k)), "invalid_header"),
    "rs512 not allowed": (lambda k: bearer(k.sign(claims(), algorithm="RS512")), "invalid_header"),
    "duplicate scope keys": (lambda k: bearer(unsigned_token({"alg": "RS256", "kid": "rsa-1"},
                                                             b'{"scope":"a","scope":"read:admin"}', b"s" * 32)),
                             "invalid_token"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
async def test_rejections_are_401_json_with_challenge(gateway, rsa_key, case):
    make_headers, code = REJECTIONS[case]
    async with gateway.get("/user", headers=make_headers(rsa_key)) as r:
        status, body = await answer(r)
    assert (status, body["code"]) == (401, code), body
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="api", error="invalid_token", error_description="')


async def test_bearer_scheme_is_case_insensitive(gateway, rsa_key):
    token = rsa_key.sign(claims())
    async with gateway.get("/user", headers={"Authorization": f"bEaReR {token}"}) as r:
        assert r.status == 200


async def test_substring_scope_does_not_grant(gateway, rsa_key):
    for scope in ("read:admin2", "read:admins", "xread:admin", "read:adm"):
        async with gateway.get("/admin", headers=bearer(rsa_key.sign(claims(scope)))) as r:
            assert r.status == 403, scope


async def test_unmatched_route_is_404_and_wrong_method_405(gateway):
    async with gateway.get("/nope") as r:
        status, body = await answer(r)
        assert (status, body["code"]) == (404, "not_found")
    async with gateway.post("/") as r:
        status, body = await answer(r)
        assert (status, body["code"]) == (405, "method_not_allowed")
        assert r.headers["Allow"] == "GET, HEAD"
    async with gateway.get("/administrator") as r:
        assert r.status == 404


async def test_claims_headers_cannot_be_spoofed_on_public_route(provider, rsa_key, aiohttp_server):
    """An echo upstream shows exactly what the gateway forwards."""
    from aiohttp import web

    seen = {}

    async def echo(request):
        seen["headers"] = dict(request.headers)
        seen["path_qs"] = request.raw_path
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    upstream = await aiohttp_server(app)
    routes = DEFAULT_ROUTES + "  - path: /echo/**\n    access: authenticated\n"
    text = config_text(str(upstream.make_url("")).rstrip("/"), provider_yaml(provider.jwks_uri), routes)
    async with running_gateway(text) as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
        spoof = {"X-Auth-Scopes": "read:admin", "x_auth_subject": "root", "X-AUTH-CLAIMS": "e30",
                 "X-Auth-Issuer": "me"}
        async with client.get("/", headers=spoof) as r:
            assert r.status == 200
        lowered = {k.lower().replace("_", "-") for k in seen["headers"]}
        assert not any(name.startswith("x-auth-") for name in lowered), seen["headers"]

        token = rsa_key.sign(claims("read:user openid", sub="bob"))
        raw = URL(f"http://127.0.0.1:{gw.port}/echo/a%7Eb/c%20d?x=%2F&y=1&y=2&z=%7E", encoded=True)
        async with aiohttp.ClientSession() as plain, plain.get(raw, headers={**spoof, **bearer(token)}) as r:
            assert r.status == 200
        headers = seen["headers"]
        assert headers["X-Auth-Subject"] == "bob"
        assert headers["X-Auth-Issuer"] == ISSUER
        assert headers["X-Auth-Scopes"] == "openid read:user"
        payload = json.loads(base64.urlsafe_b64decode(headers["X-Auth-Claims"] + "=="))
        assert payload["sub"] == "bob" and payload["aud"] == AUDIENCE
        assert "Authorization" not in headers
        assert "x_auth_subject" not in headers
        # unreserved escapes decoded once (as Werkzeug would); the query passes byte for byte
        assert seen["path_qs"] == "/echo/a~b/c%20d?x=%2F&y=1&y=2&z=%7E"


async def test_upstream_down_is_502_json(provider, rsa_key):
    from tests.support import free_port

    text = config_text(f"http://127.0.0.1:{free_port()}", provider_yaml(provider.jwks_uri), DEFAULT_ROUTES)
    async with running_gateway(text) as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
        async with client.get("/") as r:
            status, body = await answer(r)
            assert (status, body["code"]) == (502, "upstream_unavailable")


async def test_keys_unavailable_is_503_and_public_still_works(flask_upstream, rsa_key):
    from tests.support import free_port

    dead = f"http://127.0.0.1:{free_port()}/jwks.json"
    text = config_text(flask_upstream, provider_yaml(dead), DEFAULT_ROUTES)
    async with running_gateway(text, wait_keys=False) as gw, \
            aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
        async with client.get("/user", headers=bearer(rsa_key.sign(claims()))) as r:
            status, body = await answer(r)
            assert (status, body["code"]) == (503, "jwks_unavailable")
        async with client.get("/") as r:
            assert r.status == 200


async def test_path_parameters_only_pass_when_allowed(provider, echo_upstream):
    routes = "  - path: /files/**\n    access: public\n"
    for allow, expected in (("false", 400), ("true", 200)):
        text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), routes, f"allow_path_params: {allow}")
        async with running_gateway(text) as gw, aiohttp.ClientSession() as client:
            url = URL(f"http://127.0.0.1:{gw.port}/files/a;v=1/b", encoded=True)
            async with client.get(url) as r:
                assert r.status == expected
        if expected == 200:
            assert echo_upstream.last["path_qs"] == "/files/a;v=1/b"


async def test_forwarded_authorization_is_only_ever_the_verified_one(provider, rsa_key, echo_upstream):
    """Found in review: with forward_authorization, a route reading its token from the query passed a forged header."""
    routes = ("  - path: /q\n    access: authenticated\n    token_from: [query:access_token]\n"
              "  - path: /maybe\n    access: optional\n"
              "  - path: /h\n    access: authenticated\n")
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), routes, "forward_authorization: true")
    token = rsa_key.sign(claims())
    forged = {"Authorization": "Bearer forged.forged.forged"}
    async with running_gateway(text) as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
        async with client.get(f"/q?access_token={token}", headers=forged) as r:
            assert r.status == 200
        assert "Authorization" not in echo_upstream.last["headers"]
        async with client.get("/maybe", headers={"Authorization": "Basic dXNlcjpwYXNz"}) as r:
            assert r.status == 401  # a present credential must be a valid bearer token, even where optional
        async with client.get("/h", headers=bearer(token)) as r:
            assert r.status == 200
        assert echo_upstream.last["headers"]["Authorization"] == f"Bearer {token}"


async def test_query_and_cookie_tokens_stay_at_the_gateway(provider, rsa_key, echo_upstream):
    """Like the Authorization header: the upstream gets the verified claims, not the credential (nor its logs)."""
    routes = "  - path: /q\n    access: authenticated\n    token_from: [query:access_token, cookie:session]\n" \
             "    methods: [GET]\n"
    token = rsa_key.sign(claims())
    for forward, kept in ((False, False), (True, True)):
        extra = "forward_authorization: true" if forward else ""
        text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), routes, extra)
        async with running_gateway(text) as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
            url = URL(f"http://127.0.0.1:{gw.port}/q?a=%2F+1&access_token={token}&b", encoded=True)
            async with client.get(url) as r:
                assert r.status == 200
            assert echo_upstream.last["path_qs"] == (f"/q?a=%2F+1&access_token={token}&b" if kept else "/q?a=%2F+1&b")
            async with client.get("/q", headers={"Cookie": f"theme=dark; session={token}"}) as r:
                assert r.status == 200
            expected = f"theme=dark; session={token}" if kept else "theme=dark"
            assert echo_upstream.last["headers"]["Cookie"] == expected
            assert echo_upstream.last["headers"]["X-Auth-Subject"] == claims()["sub"]
