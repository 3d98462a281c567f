"""Assembles the pipeline from a GatewayConfig and runs it on aiohttp's low-level server."""
from __future__ import annotations

import asyncio
import logging
import signal
import time

import aiohttp
from aiohttp import web

from .auth_filter import AuthFilter
from .authenticator import Authenticator
from .config import GatewayConfig
from .forwarder import Forwarder
from .jwks_cache import JwksCache
from .token_cache import TokenCache

log = logging.getLogger("gateway")

SWEEP_INTERVAL = 30.0


class Gateway:
    """Owns every long-lived part: key caches, token cache, upstream pool, listener."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.idp_session: aiohttp.ClientSession | None = None
        self.caches: dict[str, JwksCache] = {}
        self.token_cache = TokenCache()
        self.forwarder = Forwarder(config.upstream)
        self.runner: web.ServerRunner | None = None
        self.port = config.listen_port
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        self.idp_session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.caches = {p.name: JwksCache(p, self.idp_session) for p in self.config.providers}
        for cache in self.caches.values():
            await cache.start()
        await self.forwarder.start()
        authenticator = Authenticator(self.caches, self.token_cache)
        handler = AuthFilter(self.config, authenticator, self.forwarder)
        limits = self.config.limits
        server = web.Server(handler.handle, max_line_size=limits.max_line_size,
                            max_field_size=limits.max_field_size, max_headers=limits.max_headers,
                            access_log=None)
        self.runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=10.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.listen_host, self.config.listen_port,
                           backlog=1024)
        await site.start()
        self.port = self.runner.addresses[0][1]
        self._sweeper = asyncio.create_task(self._sweep())
        log.info("gateway listening on http://%s:%d, forwarding to %s",
                 self.config.listen_host, self.port, self.config.upstream.url)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.token_cache.sweep(time.time())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.runner is not None:
            await self.runner.cleanup()
        for cache in self.caches.values():
            await cache.stop()
        await self.forwarder.stop()
        if self.idp_session is not None:
            await self.idp_session.close()


async def serve_forever(config: GatewayConfig) -> None:
    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
        await stop.wait()
        log.info("shutting down: no new connections, finishing requests in flight")
    finally:
        await gateway.stop()


def run(config: GatewayConfig) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        asyncio.run(serve_forever(config))
    else:
        uvloop.run(serve_forever(config))
