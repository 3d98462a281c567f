"""Issue 12 item 5: a key the IdP starts signing with right after a fetch is accepted at its first use.

The unknown-kid cooldown counts only from unknown-kid (or failed) refreshes, never from the start-up or
background fetches; a flood of random kids still costs O(1) fetches.  Fetches are counted by a real JWKS
server over HTTP; nothing sleeps for a race.
"""
import asyncio
import json
import uuid

import aiohttp
from aiohttp import web

from tests.support.config import config_text, provider_yaml
from tests.support.gateway import running_gateway
from tests.support.keys import ProviderServer, SigningKey, claims

ROUTES = "  - path: /user\n    access: authenticated\n"
COOLDOWN_30S = "jwks_cache: {cooldown: 30s, retry_min: 0.05, retry_max: 0.2, min_ttl: 0.2}"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def status_of(client, token):
    async with client.get("/user", headers=bearer(token)) as response:
        return response.status, (await response.json(content_type=None)).get("code")


def gateway_for(server, upstream):
    return running_gateway(config_text(upstream, provider_yaml(server.jwks_uri, extra=COOLDOWN_30S), ROUTES))


async def test_rotation_right_after_start_is_accepted_after_one_fetch_and_a_kid_flood_costs_one_more(
        echo_upstream):
    """Before: the start-up fetch started the 30 s cooldown, so the new key's first token was refused (401)."""
    old, new = SigningKey.rsa("old"), SigningKey.rsa("new")
    server = await ProviderServer([old]).start()
    try:
        async with gateway_for(server, echo_upstream.url) as gw, \
                aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
            assert server.fetches == 1  # the start-up fetch, well under a second ago: inside the 30 s cooldown
            server.publish(old, new)  # the IdP rotates
            assert await status_of(client, new.sign(claims())) == (200, None)
            assert server.fetches == 2  # exactly one extra fetch
            forger = SigningKey.rsa(None)
            forged = [forger.sign(claims(), headers={"kid": f"kid-{uuid.uuid4()}"}) for _ in range(500)]
            results = await asyncio.gather(*(status_of(client, token) for token in forged))
            assert set(results) == {(401, "invalid_signature")}
            assert server.fetches - 2 <= 1, server.fetches  # 500 random kids: at most one more fetch
            assert await status_of(client, new.sign(claims(sub="bob"))) == (200, None)
    finally:
        await server.stop()


async def test_background_refreshes_start_no_cooldown(echo_upstream):
    """A key published just after a background refresh is accepted at its first use, not a cooldown later."""
    old, new = SigningKey.rsa("old"), SigningKey.rsa("new")
    server = await ProviderServer([old]).start()
    server.cache_control = "max-age=0"  # background refresh every min_ttl (0.2 s)
    try:
        async with gateway_for(server, echo_upstream.url) as gw, \
                aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
            await fetched(server, 3)  # two background refreshes ran
            server.cache_control = "max-age=300"  # the next one is the last for minutes: nothing else can race
            await fetched(server, 4)
            server.publish(old, new)  # right after a background fetch, well inside the 30 s cooldown
            assert await status_of(client, new.sign(claims())) == (200, None)
            assert server.fetches == 5 and gw.caches["test"].stats.unknown_kid_refreshes == 1
    finally:
        await server.stop()


async def fetched(server, count, timeout=10.0):
    """Poll, with a deadline, until the JWKS server has answered `count` fetches."""
    deadline = asyncio.get_running_loop().time() + timeout
    while server.fetches < count:
        assert asyncio.get_running_loop().time() < deadline, f"only {server.fetches} fetches"
        await asyncio.sleep(0.02)


async def test_a_failed_refresh_starts_the_cooldown(echo_upstream):
    """While the IdP fails, unknown kids do not add fetches of their own: one failed refresh covers the cooldown."""
    key = SigningKey.rsa("only")
    server = await ProviderServer([key]).start()
    try:
        async with gateway_for(server, echo_upstream.url) as gw, \
                aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
            cache = gw.caches["test"]
            server.status = 503
            forger = SigningKey.rsa(None)
            first = forger.sign(claims(), headers={"kid": "unknown-1"})
            assert await status_of(client, first) == (401, "invalid_signature")
            assert cache.stats.unknown_kid_refreshes == 1 and cache.stats.failures >= 1
            forged = [forger.sign(claims(), headers={"kid": f"kid-{i}"}) for i in range(50)]
            await asyncio.gather(*(status_of(client, token) for token in forged))
            assert cache.stats.unknown_kid_refreshes == 1  # the failure started the cooldown
            assert await status_of(client, key.sign(claims())) == (200, None)  # last good keys still serve
    finally:
        await server.stop()


class SnapshotProvider(ProviderServer):
    """An IdP whose slow answer holds the keys it had when the request arrived, as a real one's would."""

    async def _jwks(self, request: web.Request) -> web.Response:
        body = json.dumps(self.jwks).encode()
        self.fetches += 1
        await asyncio.sleep(self.delay)
        return web.Response(body=body, content_type="application/json", headers={"Cache-Control": self.cache_control})


async def test_a_kid_that_joins_a_background_fetch_begun_before_it_was_published_still_gets_its_refresh(
        echo_upstream):
    """Before: the request joined the background fetch under way, which carried the old keys: 401."""
    old, new = SigningKey.rsa("old"), SigningKey.rsa("new")
    server = await SnapshotProvider([old]).start()
    server.cache_control = "max-age=0"  # background refreshes every 0.2 s
    try:
        async with gateway_for(server, echo_upstream.url) as gw, \
                aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
            server.delay = 0.5
            await fetched(server, 2)  # a background fetch has left and is held at the IdP
            server.cache_control = "max-age=300"
            server.publish(old, new)
            assert await status_of(client, new.sign(claims())) == (200, None)
    finally:
        await server.stop()
