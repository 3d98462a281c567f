"""The decision cache (pipeline/decision_cache.py) re-checks, on every use, what time or the JWKS can change.

(That its admissions equal the general path's answers is tests/security/test_fast_path.py; that a key
dropped from the JWKS revokes its tokens through it is tests/auth/test_jwks_cache.py.)
"""
from __future__ import annotations

import time

from tests.support.clock import FakeClock
from tests.support.config import ECHO_ROUTES, config_text, provider_yaml
from tests.support.gateway import gateway_client
from tests.support.keys import authorization, claims


async def test_a_remembered_admission_ends_when_its_token_expires(provider, echo_upstream, rsa_key):
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), ECHO_ROUTES)
    async with gateway_client(text) as (gateway, client):
        flow = gateway.generation.filter
        clock = FakeClock(time.time)
        flow.authenticator.clock = flow.authenticator.verifier.clock = flow.decisions.clock = clock
        token = rsa_key.sign(claims(ttl=300))
        for _ in range(3):  # verified, then admitted from the token cache (and remembered), then remembered
            async with client.get("/echo/x", headers=authorization(token)) as response:
                assert response.status == 200
        assert flow.decisions.hits == 1

        clock.advance(300 + 30 + 1)  # past exp and the default leeway
        async with client.get("/echo/x", headers=authorization(token)) as response:
            assert response.status == 401
            assert (await response.json())["code"] == "token_expired"
        assert flow.decisions.hits == 1


async def test_two_authorization_headers_or_a_dpop_header_are_never_answered_from_it(provider, echo_upstream,
                                                                                      rsa_key):
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), ECHO_ROUTES)
    async with gateway_client(text) as (gateway, client):
        flow = gateway.generation.filter
        token = rsa_key.sign(claims())
        for _ in range(2):
            async with client.get("/echo/x", headers=authorization(token)) as response:
                assert response.status == 200
        hits = flow.decisions.hits
        twice = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
        async with client.get("/echo/x", headers=twice) as response:
            assert response.status == 401
        async with client.get("/echo/x", headers={**authorization(token), "DPoP": "x.y.z"}) as response:
            assert response.status == 401
        assert flow.decisions.hits == hits
