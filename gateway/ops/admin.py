"""The admin listener: /healthz, /readyz and /metrics on their own address, never the public port.

It only asks two questions of whoever runs it, "why not ready?" and "what
are the metrics?", so one gateway process and the `--workers` supervisor
serve the same three endpoints.
"""
from __future__ import annotations

import logging
from typing import Callable

from aiohttp import web

from gateway import errors
from gateway.config.model import AdminConfig
from gateway.observe.metrics import CONTENT_TYPE

log = logging.getLogger("gateway.admin")


class AdminServer:
    def __init__(self, host: str, port: int, not_ready: Callable[[], list[str]], metrics: Callable[[], bytes]):
        self.host = host
        self.port = port
        self.not_ready = not_ready
        self.metrics = metrics
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.on_response_prepare.append(_no_version)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, self.host, self.port).start()
        except OSError:
            await self.runner.cleanup()
            self.runner = None
            raise
        self.port = self.runner.addresses[0][1]
        log.info("admin listener on http://%s:%d (/healthz /readyz /metrics)", self.host, self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        reasons = self.not_ready()
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics(), headers={"Content-Type": CONTENT_TYPE})


async def start_admin(config: AdminConfig, not_ready: Callable[[], list[str]],
                      metrics: Callable[[], bytes]) -> AdminServer | None:
    """The admin listener; if the unconfigured default address is taken, the gateway serves on without it."""
    admin = AdminServer(config.host, config.port, not_ready, metrics)
    try:
        await admin.start()
    except OSError as exc:
        if config.required:
            raise
        log.warning("admin listener not started: %s:%d is unavailable (%s); /healthz, /readyz and /metrics are "
                    "off until it is configured with admin.listen or --admin", config.host, config.port, exc.strerror)
        return None
    return admin


def gateway_not_ready(gateway) -> list[str]:
    """Why this gateway process should not get traffic yet: no config, or a provider without keys."""
    if gateway.generation is None:
        return ["no configuration is loaded yet"]
    reasons = []
    for name, cache in gateway.caches.items():
        if not cache.loaded:
            why = cache.stats.last_error or "the first fetch has not finished"
            reasons.append(f"provider {name!r} has no signing keys yet: {why}")
    return reasons


async def _no_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = errors.SERVER  # as on the public listener: no versions
