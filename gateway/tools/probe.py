"""One look at each provider's keys, for `check` and `explain --token`, without running a gateway.

The real JwksCache does the fetching (discovery, size limits, key checks), so
a provider that `check` calls reachable is one the gateway can use.  Each
cache gets one attempt: a refused connection is reported at once instead of
after the retry backoff.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Iterable

import aiohttp

from gateway.config.model import ProviderConfig
from gateway.auth.jwks_cache import FetchError, JwksCache


@asynccontextmanager
async def fetched_caches(providers: Iterable[ProviderConfig]) -> AsyncIterator[dict[str, JwksCache]]:
    """Started caches, each loaded or failed once (or out of time); stopped on exit."""
    quiet = logging.getLogger("gateway.jwks")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the caller reports failures itself, once
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        caches = {p.name: JwksCache(p, session) for p in providers}
        try:
            for cache in caches.values():
                try:
                    await cache.start()
                except FetchError as exc:  # static keys, none usable
                    cache.stats.last_error = str(exc)
            await asyncio.gather(*(_first_attempt(c) for c in caches.values()))
            yield caches
        finally:
            for cache in caches.values():
                await cache.stop()
            quiet.setLevel(level)


async def _first_attempt(cache: JwksCache) -> None:
    deadline = time.monotonic() + cache.policy.timeout + 1.0
    while not cache.loaded and cache.stats.last_error is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def reachability(caches: dict[str, JwksCache], source: str) -> tuple[list[str], list[str], list[str]]:
    """(notes for reachable providers, file:line warnings for unreachable ones, errors for misconfigured ones)."""
    notes, warnings, errors = [], [], []
    for name, cache in caches.items():
        if cache.loaded:
            origin = "static keys" if cache.provider.static_jwks is not None else cache.jwks_uri
            notes.append(f"provider {name!r}: {cache.stats.key_count} usable key(s) from {origin}")
        elif cache.stats.misconfigured is not None:
            errors.append(f"{source}:{cache.provider.line}: provider {name!r}: {cache.stats.misconfigured}; "
                          "until then its tokens get 503")
        else:
            why = cache.stats.last_error or "no answer in time"
            warnings.append(f"{source}:{cache.provider.line}: warning: provider {name!r}: keys could not be "
                            f"fetched ({why}); its tokens get 503 until they can")
    return notes, warnings, errors
