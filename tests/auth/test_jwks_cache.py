"""Key lifecycle against a real JWKS server that rotates, fails, delays and counts fetches.

The unknown-kid cooldown is measured on a FakeClock the tests move past it, never waited out.
"""
import asyncio
import json
import uuid
from pathlib import Path

import pytest

from gateway.auth.jwks_cache import JwksCache, build_keys, discovery_urls, parse_max_age
from tests.support.clock import FakeClock
from tests.support.config import config_text, provider_yaml, typed_config
from tests.support.gateway import eventually, gateway_client, running_gateway
from tests.support.keys import ISSUER, ProviderServer, SigningKey, authorization, claims

COOLDOWN = 60  # passes only when a test advances the clock
FAST = f"jwks_cache: {{cooldown: {COOLDOWN}, retry_min: 0.05, retry_max: 0.2, min_ttl: 0.2}}"
ROUTES = "  - path: /user\n    access: authenticated\n"


@pytest.fixture
def clock():
    return FakeClock()



async def status_of(client, token, path="/user"):
    async with client.get(path, headers=authorization(token)) as response:
        return response.status, (await response.json(content_type=None)).get("code")


def keys_from(server, upstream, extra=FAST, issuer=ISSUER):
    """A gateway whose one provider fetches its keys from `server`."""
    return config_text(upstream, provider_yaml(server.jwks_uri, extra=extra, issuer=issuer), ROUTES)


async def test_rotation_is_picked_up_without_restart(clock, echo_upstream):
    old, new = SigningKey.rsa("old"), SigningKey.rsa("new")
    async with ProviderServer([old]) as server:
        async with gateway_client(keys_from(server, echo_upstream.url), jwks_clock=clock) as (gw, client):
            assert await status_of(client, old.sign(claims())) == (200, None)
            server.publish(old, new)
            assert await status_of(client, new.sign(claims())) == (200, None)
            assert server.fetches == 2  # start-up + exactly one refresh for the new kid


async def test_random_kid_flood_causes_bounded_fetches(clock, echo_upstream, rsa_key):
    async with ProviderServer([rsa_key]) as server:
        server.delay = 0.05  # so the flood overlaps one in-flight refresh
        async with gateway_client(keys_from(server, echo_upstream.url), jwks_clock=clock) as (gw, client):
            forger = SigningKey.rsa(None)  # a key nobody published, 400 made-up kids
            forged = [forger.sign(claims(), headers={"kid": f"kid-{uuid.uuid4()}"}) for _ in range(400)]
            before = server.fetches
            results = await asyncio.gather(*(status_of(client, t) for t in forged))
            assert {r for r in results} == {(401, "invalid_signature")}
            assert server.fetches - before == 1, server.fetches  # one shared refresh for 400 kids
            # inside the cooldown a second flood is refused without any fetch
            await asyncio.gather(*(status_of(client, t) for t in reversed(forged)))
            assert server.fetches - before == 1
            assert await status_of(client, rsa_key.sign(claims())) == (200, None)


async def test_warm_keys_mean_no_fetch_on_the_request_path(clock, echo_upstream, rsa_key, ec_key):
    """Issue 7: a cache miss costs one signature check and no JWKS fetch while the token's kid is published."""
    async with ProviderServer([rsa_key, ec_key]) as server:
        async with gateway_client(keys_from(server, echo_upstream.url), jwks_clock=clock) as (gw, client):
            cache = gw.caches["test"]
            # the start-up fetch starts no cooldown (issue 12 item 5): an unknown kid would refresh now
            fetches, discovery = server.fetches, server.discovery_fetches
            tokens = [key.sign(claims(sub=f"user-{i}", jti=str(uuid.uuid4()))) for i in range(150)
                      for key in (rsa_key, ec_key)]
            assert len(set(tokens)) == 300
            misses = gw.token_cache.misses
            results = await asyncio.gather(*(status_of(client, t) for t in tokens))
            assert set(results) == {(200, None)}
            assert (server.fetches, server.discovery_fetches) == (fetches, discovery)
            assert cache.stats.unknown_kid_refreshes == 0 and cache.stats.fetches == fetches
            assert gw.token_cache.misses - misses == 300  # each was verified, none served from the token cache


async def test_idp_down_after_start_keeps_valid_tokens_working(clock, echo_upstream, rsa_key):
    async with ProviderServer([rsa_key]) as server:
        async with gateway_client(keys_from(server, echo_upstream.url), jwks_clock=clock) as (gw, client):
            assert await status_of(client, rsa_key.sign(claims(sub="a"))) == (200, None)
            server.status = 503
            clock.advance(COOLDOWN)
            assert (await status_of(client, SigningKey.rsa("unknown").sign(claims())))[0] == 401
            failures = gw.caches["test"].stats.failures
            assert failures >= 1
            # a token never seen before, signed by the last good key, still verifies
            assert await status_of(client, rsa_key.sign(claims(sub="b"))) == (200, None)
            server.body, server.status = b"{not json", 200
            clock.advance(COOLDOWN)
            assert (await status_of(client, SigningKey.rsa("unknown2").sign(claims())))[0] == 401
            assert gw.caches["test"].stats.failures > failures
            assert await status_of(client, rsa_key.sign(claims(sub="c"))) == (200, None)


async def test_idp_down_before_start_gives_503_then_recovers(echo_upstream, rsa_key):
    async with ProviderServer([rsa_key]) as server:
        server.status = 500
        async with gateway_client(keys_from(server, echo_upstream.url), wait_keys=False) as (gw, client):
            token = rsa_key.sign(claims())
            assert await status_of(client, token) == (503, "jwks_unavailable")
            server.status = 200

            async def recovered():
                return (await status_of(client, token))[0] == 200

            await eventually(recovered, what="recovered")


async def test_removing_a_key_revokes_it_after_the_next_refresh(clock, echo_upstream):
    first, second = SigningKey.rsa("first"), SigningKey.rsa("second")
    async with ProviderServer([first, second]) as server:
        async with gateway_client(keys_from(server, echo_upstream.url), jwks_clock=clock) as (gw, client):
            token = first.sign(claims())
            assert await status_of(client, token) == (200, None)  # now in the token cache
            server.publish(second)
            clock.advance(COOLDOWN)
            await status_of(client, SigningKey.rsa("third").sign(claims()))  # unknown kid: refresh
            assert await status_of(client, token) == (401, "invalid_signature")


async def test_background_refresh_follows_max_age(echo_upstream, rsa_key):
    async with ProviderServer([rsa_key]) as server:
        server.cache_control = "public, max-age=0"
        async with running_gateway(keys_from(server, echo_upstream.url)):
            async def refreshed_twice():
                return server.fetches >= 3

            await eventually(refreshed_twice, timeout=5, what="refreshed_twice")  # min_ttl 0.2 s clamps max-age=0


async def test_oversized_jwks_is_refused_and_keys_kept(clock, echo_upstream, rsa_key):
    async with ProviderServer([rsa_key]) as server:
        extra = FAST.replace("}", ", max_bytes: 2048}")
        async with gateway_client(keys_from(server, echo_upstream.url, extra), jwks_clock=clock) as (gw, client):
            server.body = json.dumps({"keys": [rsa_key.public_jwk], "pad": "x" * 5000}).encode()
            clock.advance(COOLDOWN)
            await status_of(client, SigningKey.rsa("unknown").sign(claims()))
            assert "limit" in gw.caches["test"].stats.last_error
            assert await status_of(client, rsa_key.sign(claims())) == (200, None)


async def test_discovery_finds_jwks_uri_and_checks_issuer(echo_upstream, rsa_key):
    async with ProviderServer([rsa_key]) as server:
        issuer = f"{server.url}/"
        text = config_text(echo_upstream.url, provider_yaml(None, "disc", issuer, extra=FAST), ROUTES)
        async with gateway_client(text) as (gw, client):
            assert await status_of(client, rsa_key.sign(claims(issuer=issuer))) == (200, None)
            assert server.discovery_fetches == 1
        server.issuer = "https://someone-else.test/"
        async with gateway_client(text, wait_keys=False) as (gw, client):
            async def failed():
                return gw.caches["disc"].stats.failures >= 1

            await eventually(failed, what="failed")
            assert "names issuer" in gw.caches["disc"].stats.last_error
            assert (await status_of(client, rsa_key.sign(claims(issuer=issuer))))[0] == 503


async def test_unknown_issuer_costs_no_fetch(clock, echo_upstream, rsa_key):
    async with ProviderServer([rsa_key]) as server:
        async with gateway_client(keys_from(server, echo_upstream.url), jwks_clock=clock) as (gw, client):
            before = server.fetches
            clock.advance(COOLDOWN)
            token = SigningKey.rsa("evil").sign(claims(issuer="https://evil.test/"))
            assert await status_of(client, token) == (401, "invalid_claims")
            assert server.fetches == before


def test_unusable_keys_are_skipped_not_fatal():
    good, weak, ec = SigningKey.rsa("good"), SigningKey.rsa("weak", bits=1024), SigningKey.ec("ec")
    document = {"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        weak.public_jwk,
        {**good.public_jwk, "kid": "enc", "use": "enc"},
        {**good.public_jwk, "kid": "private", "d": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
        "not an object",
        {**good.public_jwk, "n": "!!!", "kid": "broken"},
        good.public_jwk,
        ec.public_jwk,
    ]}
    keys, skipped, _ = build_keys(document, ("RS256", "ES256"))
    assert set(keys) == {"good", "ec"}
    assert set(keys["good"]) == {"RS256"} and set(keys["ec"]) == {"ES256"}
    assert len(skipped) == 7
    assert any("1024 bits" in reason for reason in skipped)


def test_duplicate_kids_are_all_ignored():
    a, b = SigningKey.rsa("same"), SigningKey.rsa("same")
    keys, skipped, _ = build_keys({"keys": [a.public_jwk, b.public_jwk]}, ("RS256",))
    assert keys == {} and skipped


def test_cache_control_parsing_and_discovery_urls():
    assert parse_max_age("public, max-age=600, must-revalidate") == 600
    assert parse_max_age("no-store, max-age=600") is None
    assert parse_max_age(None) is None
    assert discovery_urls("https://id.example.com/realms/main/") == [
        "https://id.example.com/realms/main/.well-known/openid-configuration",
        "https://id.example.com/.well-known/oauth-authorization-server/realms/main",
    ]


async def test_static_jwks_file_needs_no_network(tmp_path, echo_upstream, rsa_key):
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [rsa_key.public_jwk]}))
    text = config_text(echo_upstream.url, provider_yaml(None, "offline", extra="jwks_file: keys.json"), ROUTES)
    async with gateway_client(text, base_dir=tmp_path) as (gw, client):
        assert gw.caches["offline"].loaded
        assert await status_of(client, rsa_key.sign(claims())) == (200, None)
        assert (await status_of(client, SigningKey.rsa("other").sign(claims())))[0] == 401


async def test_pathological_jwks_never_stops_the_refresher(echo_upstream):
    """Found in review: a deeply nested JWKS killed the background task for good, so revocation stopped."""
    first, second = SigningKey.rsa("first"), SigningKey.rsa("second")
    async with ProviderServer([first, second]) as server:
        server.cache_control = "max-age=0"  # refresh every min_ttl (0.2 s)
        async with gateway_client(keys_from(server, echo_upstream.url)) as (gw, client):
            token = first.sign(claims())
            assert await status_of(client, token) == (200, None)
            server.body = b"[" * 50_000
            failures = gw.caches["test"].stats.failures

            async def failed_twice():
                return gw.caches["test"].stats.failures >= failures + 2

            await eventually(failed_twice, what="failed_twice")
            server.body = None
            server.publish(second)  # the IdP recovers and drops `first`

            async def revoked():
                return (await status_of(client, token))[0] == 401

            await eventually(revoked, what="revoked")


def test_token_without_kid_needs_a_single_key_jwks():
    anonymous, named = SigningKey.rsa(None), SigningKey.rsa("named")
    jwks = json.dumps({"keys": [anonymous.public_jwk, named.public_jwk]})
    text = config_text("http://127.0.0.1:1", provider_yaml(None, "static", audience="a", extra=f"jwks: {jwks}"), ROUTES)
    config = typed_config(text, {}, Path("."))
    cache = JwksCache(config.providers[0], None)
    cache._install(config.providers[0].static_jwks, "test")
    assert cache.lookup(None, "RS256") is None  # two keys: a kid-less token matches none
    assert cache.lookup("named", "RS256") is not None
