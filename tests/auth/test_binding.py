"""Certificate-bound tokens (RFC 8705 §3) end to end: a bound token only with the certificate it names."""
from __future__ import annotations

import json

from tests.support.tls import session

PATH = "/echo/user/me"
NOT_PRESENTED = "token is bound to a client certificate this connection did not present"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def _get(client, token: str, **headers: str) -> tuple[int, dict, str]:
    async with client.get(PATH, headers={**bearer(token), **headers}) as response:
        return response.status, json.loads(await response.text()), response.headers.get("WWW-Authenticate", "")


async def test_a_bound_token_is_accepted_with_its_certificate(tls_gateway, certs, echo_upstream, bound_token):
    async with tls_gateway("optional") as gw, session(gw, certs.context(certs.client)) as client:
        status, _, _ = await _get(client, bound_token(certs.client))
    assert status == 200
    assert echo_upstream.last.all("X-Auth-Binding") == ["mtls"]


async def test_a_bound_token_with_another_certificate_or_none_is_refused(tls_gateway, certs, echo_upstream, bound_token):
    token = bound_token(certs.client)
    async with tls_gateway("optional") as gw:
        for context in (certs.context(certs.other_client), certs.context()):
            async with session(gw, context) as client:
                status, body, challenge = await _get(client, token)
            assert status == 401 and body["code"] == "invalid_token"
            assert NOT_PRESENTED in body["description"]
            assert 'error="invalid_token"' in challenge and NOT_PRESENTED in challenge
    assert echo_upstream.seen == []


async def test_a_bound_token_over_plain_http_is_refused(tls_gateway, certs, echo_upstream, bound_token):
    async with tls_gateway(tls=False) as gw, session(gw, None) as client:
        status, body, _ = await _get(client, bound_token(certs.client))
        forged = {"X_Auth_Binding": "mtls", "X_Auth_Client_Cert_Sha256": "A" * 43}  # a client's claims count for nothing
        unbound, _, _ = await _get(client, bound_token(None), **forged)
    assert status == 401 and NOT_PRESENTED in body["description"] and "no client certificate" in body["description"]
    assert unbound == 200
    assert not {"x-auth-binding", "x_auth_binding", "x-auth-client-cert-sha256", "x_auth_client_cert_sha256"} \
        & echo_upstream.last.names()


async def test_a_cached_bound_token_is_checked_on_every_connection(tls_gateway, certs, echo_upstream, bound_token):
    """The token cache holds the verified token; the binding is still checked against each request's connection."""
    token = bound_token(certs.client)
    async with tls_gateway("optional") as gw:
        async with session(gw, certs.context(certs.client)) as client:
            assert (await _get(client, token))[0] == 200
        assert gw.token_cache.get(token, 0) is not None
        async with session(gw, certs.context(certs.other_client)) as client:
            assert (await _get(client, token))[0] == 401
        async with session(gw, certs.context()) as client:
            assert (await _get(client, token))[0] == 401
        async with session(gw, certs.context(certs.client)) as client:
            assert (await _get(client, token))[0] == 200
    assert len(echo_upstream.seen) == 2


async def test_token_binding_required_refuses_unbound_tokens(tls_gateway, certs, echo_upstream, bound_token):
    async with tls_gateway("optional", provider_extra="token_binding: required") as gw, \
            session(gw, certs.context(certs.client)) as client:
        status, body, _ = await _get(client, bound_token(None))
        bound, _, _ = await _get(client, bound_token(certs.client))
    assert status == 401 and "token_binding: required" in body["description"]
    assert bound == 200 and len(echo_upstream.seen) == 1


async def test_a_cnf_the_gateway_cannot_check_is_refused(tls_gateway, certs, echo_upstream, rsa_key):
    from tests.support.keys import claims

    cases = {
        "jwk": {"jwk": {"kty": "EC"}},  # a confirmation method this gateway does not implement
        "x5t#S256": {"x5t#S256": "not-a-thumbprint"},
        "a JSON object": "x5t",
    }
    async with tls_gateway("optional") as gw, session(gw, certs.context(certs.client)) as client:
        for expected, cnf in cases.items():
            status, body, _ = await _get(client, rsa_key.sign(claims(cnf=cnf)))
            assert status == 401 and expected in body["description"], body
    assert echo_upstream.seen == []
