"""Every decision of the core contract, through an in-process gateway in front of the real Flask app."""
import base64
import json

import aiohttp
import pytest
from yarl import URL

from tests.support.config import DEFAULT_ROUTES, config_text, provider_yaml
from tests.support.gateway import gateway_client, running_gateway
from tests.support.keys import AUDIENCE, ISSUER, SigningKey, authorization, claims, unsigned_token
from tests.support.processes import free_port


@pytest.fixture
async def gateway(provider, flask_upstream):
    text = config_text(flask_upstream, provider_yaml(provider.jwks_uri), DEFAULT_ROUTES)
    async with gateway_client(text) as (_, session):
        yield session



async def answer(response):
    return response.status, await response.json(content_type=None)


async def test_tutorial_walkthrough(gateway, rsa_key):
    async with gateway.get("/") as r:
        assert await answer(r) == (200, {"msg": "Hello world!"})
    async with gateway.get("/user") as r:
        status, body = await answer(r)
        assert status == 401 and body["code"] == "authorization_header_missing"
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    async with gateway.get("/user", headers=authorization(rsa_key.sign(claims("read:user")))) as r:
        assert await answer(r) == (200, {"msg": "Hello user!"})
    async with gateway.get("/admin", headers=authorization(rsa_key.sign(claims("read:user")))) as r:
        status, body = await answer(r)
        assert status == 403 and body["code"] == "insufficient_scope"
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="api", error="insufficient_scope"')
        assert 'scope="read:admin"' in r.headers["WWW-Authenticate"]
    async with gateway.get("/admin", headers=authorization(rsa_key.sign(claims("read:user read:admin")))) as r:
        assert await answer(r) == (200, {"msg": "Hello admin!"})


async def test_es256_tokens_verify(gateway, ec_key):
    async with gateway.get("/user", headers=authorization(ec_key.sign(claims()))) as r:
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
    "garbage token": (lambda k: authorization("not-a-jwt"), "invalid_header"),
    "undecodable jwt": (lambda k: authorization("aaaa.bbbb.cccc"), "invalid_header"),
    "jwe": (lambda k: authorization("a.b.c.d.e"), "invalid_header"),
    "expired": (lambda k: authorization(k.sign(claims(ttl=-600))), "token_expired"),
    "wrong audience": (lambda k: authorization(k.sign(claims(audience="https://other.test"))), "invalid_claims"),
    "wrong issuer": (lambda k: authorization(k.sign(claims(issuer="https://evil.test/"))), "invalid_claims"),
    "not yet valid": (lambda k: authorization(k.sign(claims(nbf=int(__import__("time").time()) + 600))),
                      "invalid_claims"),
    "no exp": (lambda k: authorization(k.sign({**claims(), "exp": None})), "invalid_claims"),
    "string exp": (lambda k: authorization(k.sign({**claims(), "exp": "9999999999"})), "invalid_claims"),
    "other key, same kid": (lambda k: authorization(SigningKey.rsa("rsa-1").sign(claims())), "invalid_signature"),
    "unknown kid": (lambda k: authorization(SigningKey.rsa("nope").sign(claims())), "invalid_signature"),
    "alg none": (lambda k: authorization(unsigned_token({"alg": "none", "kid": "rsa-1"}, claims(), b"s" * 32)),
                 "invalid_header"),
    "hs256 with public key": (lambda k: authorization(_forged_hs256_with_public_key(k)), "invalid_header"),
    "rs512 not allowed": (lambda k: authorization(k.sign(claims(), algorithm="RS512")), "invalid_header"),
    "duplicate scope keys": (lambda k: authorization(unsigned_token({"alg": "RS256", "kid": "rsa-1"},
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
        async with gateway.get("/admin", headers=authorization(rsa_key.sign(claims(scope)))) as r:
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


async def test_claims_headers_cannot_be_spoofed_on_public_route(provider, rsa_key, echo_upstream):
    """An echo upstream shows exactly what the gateway forwards."""
    routes = DEFAULT_ROUTES + "  - path: /echo/**\n    access: authenticated\n"
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), routes)
    async with gateway_client(text) as (gw, client):
        spoof = {"X-Auth-Scopes": "read:admin", "x_auth_subject": "root", "X-AUTH-CLAIMS": "e30",
                 "X-Auth-Issuer": "me"}
        async with client.get("/", headers=spoof) as r:
            assert r.status == 200
        lowered = {k.lower().replace("_", "-") for k, _ in echo_upstream.last.headers}
        assert not any(name.startswith("x-auth-") for name in lowered), echo_upstream.last.headers

        token = rsa_key.sign(claims("read:user openid", sub="bob"))
        raw = URL(f"http://127.0.0.1:{gw.port}/echo/a%7Eb/c%20d?x=%2F&y=1&y=2&z=%7E", encoded=True)
        async with aiohttp.ClientSession() as plain, plain.get(raw, headers={**spoof, **authorization(token)}) as r:
            assert r.status == 200
        seen = echo_upstream.last
        assert seen.header("X-Auth-Subject") == "bob"
        assert seen.header("X-Auth-Issuer") == ISSUER
        assert seen.header("X-Auth-Scopes") == "openid read:user"
        payload = json.loads(base64.urlsafe_b64decode(seen.header("X-Auth-Claims") + "=="))
        assert payload["sub"] == "bob" and payload["aud"] == AUDIENCE
        assert seen.header("Authorization") is None
        assert "x_auth_subject" not in seen.names()
        # unreserved escapes decoded once (as Werkzeug would); the query passes byte for byte
        assert seen.target == "/echo/a~b/c%20d?x=%2F&y=1&y=2&z=%7E"


async def test_upstream_down_is_502_json(provider, rsa_key):
    text = config_text(f"http://127.0.0.1:{free_port()}", provider_yaml(provider.jwks_uri), DEFAULT_ROUTES)
    async with gateway_client(text) as (gw, client):
        async with client.get("/") as r:
            status, body = await answer(r)
            assert (status, body["code"]) == (502, "upstream_unavailable")


async def test_keys_unavailable_is_503_and_public_still_works(flask_upstream, rsa_key):
    dead = f"http://127.0.0.1:{free_port()}/jwks.json"
    text = config_text(flask_upstream, provider_yaml(dead), DEFAULT_ROUTES)
    async with gateway_client(text, wait_keys=False) as (gw, client):
        async with client.get("/user", headers=authorization(rsa_key.sign(claims()))) as r:
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
            assert echo_upstream.last.target == "/files/a;v=1/b"


async def test_forwarded_authorization_is_only_ever_the_verified_one(provider, rsa_key, echo_upstream):
    """Found in review: with forward_authorization, a route reading its token from the query passed a forged header."""
    routes = ("  - path: /q\n    access: authenticated\n    token_from: [query:access_token]\n"
              "  - path: /maybe\n    access: optional\n"
              "  - path: /h\n    access: authenticated\n")
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), routes, "forward_authorization: true")
    token = rsa_key.sign(claims())
    forged = {"Authorization": "Bearer forged.forged.forged"}
    async with gateway_client(text) as (gw, client):
        async with client.get(f"/q?access_token={token}", headers=forged) as r:
            assert r.status == 200
        assert echo_upstream.last.header("Authorization") is None
        async with client.get("/maybe", headers={"Authorization": "Basic dXNlcjpwYXNz"}) as r:
            assert r.status == 401  # a present credential must be a valid bearer token, even where optional
        async with client.get("/h", headers=authorization(token)) as r:
            assert r.status == 200
        assert echo_upstream.last.header("Authorization") == f"Bearer {token}"


async def test_query_and_cookie_tokens_stay_at_the_gateway(provider, rsa_key, echo_upstream):
    """Like the Authorization header: the upstream gets the verified claims, not the credential (nor its logs)."""
    routes = "  - path: /q\n    access: authenticated\n    token_from: [query:access_token, cookie:session]\n" \
             "    methods: [GET]\n"
    token = rsa_key.sign(claims())
    for forward, kept in ((False, False), (True, True)):
        extra = "forward_authorization: true" if forward else ""
        text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), routes, extra)
        async with gateway_client(text) as (gw, client):
            url = URL(f"http://127.0.0.1:{gw.port}/q?a=%2F+1&access_token={token}&b", encoded=True)
            async with client.get(url) as r:
                assert r.status == 200
            assert echo_upstream.last.target == (f"/q?a=%2F+1&access_token={token}&b" if kept else "/q?a=%2F+1&b")
            async with client.get("/q", headers={"Cookie": f"theme=dark; session={token}"}) as r:
                assert r.status == 200
            expected = f"theme=dark; session={token}" if kept else "theme=dark"
            assert echo_upstream.last.header("Cookie") == expected
            assert echo_upstream.last.header("X-Auth-Subject") == claims()["sub"]
