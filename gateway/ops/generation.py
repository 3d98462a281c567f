"""One generation of rules: a config with the caches, token cache and filter built for it.

The gateway serves from exactly one generation at a time and swaps to the
next in a single assignment, between requests.  A request keeps the
generation it started with to the end, and the generation counts such
requests so the caches it alone used are stopped only once it is drained.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.pipeline.auth_filter import AuthFilter
from gateway.config.model import GatewayConfig
from gateway.auth.jwks_cache import JwksCache
from gateway.auth.token_cache import TokenCache


@dataclass(eq=False)
class Generation:
    config: GatewayConfig
    caches: dict[str, JwksCache]
    token_cache: TokenCache
    filter: AuthFilter
    inflight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if not self.inflight:
            self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """True once no request of this generation is running (False if `timeout` ran out first)."""
        if not self.inflight:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
