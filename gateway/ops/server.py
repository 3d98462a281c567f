"""Assembles the pipeline from a GatewayConfig and runs it on aiohttp's low-level server."""
from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import ssl
import time

import aiohttp
from aiohttp import web

from gateway.observe import access_log
from gateway.observe.access_log import AccessRecord
from gateway.pipeline.auth_filter import AuthFilter
from gateway.auth.authenticator import Authenticator
from gateway.auth.dpop import DpopChecker
from gateway.auth.replay_store import ReplayStore, open_replay_store
from gateway.ops.client_connection import FastHttpServer
from gateway.config.model import GatewayConfig
from gateway.proxy.forwarder import Forwarder
from gateway.ops.generation import Generation
from gateway.auth.jwks_cache import JwksCache
from gateway.observe.metrics import Metrics
from gateway.ops.operations import Operations, ServeOptions
from gateway.config.loader.tls import TlsFileError
from gateway.ops.tls_listener import CertificateRotation, TlsSite
from gateway.auth.token_cache import TokenCache

log = logging.getLogger("gateway")

SWEEP_INTERVAL = 30.0
CANCEL_GRACE = 0.05  # after drain_timeout: aiohttp's wait before it cancels what still runs


class Gateway:
    """Owns every long-lived part: key caches, token cache, upstream pool, listener."""

    def __init__(self, config: GatewayConfig, metrics: Metrics | None = None, reuse_port: bool = False):
        self.config = config
        self.metrics = metrics or Metrics()
        self.generation: Generation | None = None  # the rules being served; swapped whole by activate()
        self._retired: list[Generation] = []  # earlier generations that may still have requests running
        self.reuse_port = reuse_port  # --workers: sibling processes share the port (SO_REUSEPORT)
        self.idp_session: aiohttp.ClientSession | None = None
        self.caches: dict[str, JwksCache] = {}
        self.token_cache = TokenCache(config.limits.token_cache_entries)
        self.forwarder = Forwarder(config.upstream, config.limits, config.clients)
        self.runner: web.ServerRunner | None = None
        self.port = config.listen_port
        self._tasks: list[asyncio.Task] = []  # the token cache sweep, the certificate watch
        self.tls: CertificateRotation | None = None  # with tls: the context new handshakes get
        self.replay_store: ReplayStore | None = None  # DPoP jti set: kept across reloads, so no proof is reusable
        self._replay_store_url = ""
        self._replaced_stores: list[ReplayStore] = []

    async def start(self) -> None:
        require_c_parser()
        self.idp_session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        caches = {p.name: JwksCache(p, self.idp_session) for p in self.config.providers}
        for cache in caches.values():
            await cache.start()
        await self.forwarder.start()
        self.activate(self.config, caches, self.token_cache)
        limits = self.config.limits
        # keepalive_timeout also bounds a new connection's wait for a complete request head
        # (aiohttp does not extend it per byte), which is what starves slowloris clients.
        server = FastHttpServer(self._handle, lambda: self.generation, limits=limits, access_log=None,
                                keepalive_timeout=self.config.clients.idle_timeout)
        self.runner = web.ServerRunner(server, handle_signals=False,
                                       shutdown_timeout=CANCEL_GRACE)
        await self.runner.setup()
        tls = self.config.tls
        if tls is None:
            site = web.TCPSite(self.runner, self.config.listen_host, self.config.listen_port,
                               backlog=1024, reuse_port=self.reuse_port)
        else:
            try:
                self.tls = CertificateRotation(tls, lambda material: self.metrics.tls_certificate(material.not_after))
            except (TlsFileError, ssl.SSLError, OSError) as exc:
                raise StartupError(f"tls: {exc}") from None
            site = TlsSite(self.runner, self.config.listen_host, self.config.listen_port, self.tls,
                           timeout=self.config.clients.idle_timeout, backlog=1024, reuse_port=self.reuse_port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        self._tasks.append(asyncio.create_task(self._sweep()))
        if self.tls is not None:
            self._tasks.append(asyncio.create_task(self.tls.watch(self.config.reload.interval)))
        scheme = "http" if tls is None else "https"
        log.info("gateway listening on %s://%s:%d, forwarding to %s",
                 scheme, self.config.listen_host, self.port, self.config.upstream.url)
        if tls is None and not is_loopback(self.config.listen_host):
            log.warning("listening on %s without tls: bearer tokens cross the network in cleartext; fine behind a "
                        "mesh sidecar that encrypts, otherwise add a tls: section (or --tls-cert/--tls-key)",
                        self.config.listen_host or "every address")

    def activate(self, config: GatewayConfig, caches: dict[str, JwksCache], token_cache: TokenCache) -> Generation | None:
        """Serve new rules from the next request on; returns the generation they replace (see reload.py)."""
        if config.dpop.replay_store != self._replay_store_url:  # a new store only when the setting changed
            if self.replay_store is not None:  # requests of the old rules may still use it: closed at stop
                self._replaced_stores.append(self.replay_store)
            self.replay_store = open_replay_store(config.dpop.replay_store, config.dpop.replay_entries)
            self._replay_store_url = config.dpop.replay_store
        dpop = DpopChecker(config.dpop, self.replay_store)
        handler = AuthFilter(config, Authenticator(caches, token_cache, dpop=dpop), self.forwarder, self.observe)
        previous, self.generation = self.generation, Generation(config, caches, token_cache, handler)
        if previous is not None:  # remembered until drained, so a shutdown waits for its requests too
            self._retired = [g for g in self._retired if g.inflight] + [previous]
        self.config, self.caches, self.token_cache = config, caches, token_cache
        return previous

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        generation = self.generation  # read once: the request keeps these rules to the end
        generation.enter()
        try:
            return await generation.filter.handle(request)
        finally:
            generation.leave()

    def observe(self, record: AccessRecord) -> None:
        access_log.write(record)
        self.metrics.observe(record)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.token_cache.sweep(time.time())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.runner is not None:
            # Drain (docs/proxy.md): stop accepting; keep-alive connections close once idle; open
            # WebSockets are told 1001; requests in flight get drain_timeout; cleanup() cancels the rest.
            for site in list(self.runner.sites):
                await site.stop()
            self.runner.server.pre_shutdown()
            if self.forwarder.websockets is not None:
                self.forwarder.websockets.close_all()
            running = [g for g in (*self._retired, self.generation) if g is not None]
            await asyncio.gather(*(g.drained(self.config.clients.drain_timeout) for g in running))
            await self.runner.cleanup()
        for cache in self.caches.values():
            await cache.stop()
        await self.forwarder.stop()
        for store in (*self._replaced_stores, self.replay_store):
            if store is not None:
                await store.close()
        if self.idp_session is not None:
            await self.idp_session.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StartupError(Exception):
    """The gateway refuses to start; the message says why and what to do."""


def require_c_parser() -> None:
    """Smuggling defences rely on llhttp, aiohttp's C parser; its pure-Python fallback is laxer."""
    from aiohttp import http_parser

    if http_parser.HttpRequestParser is http_parser.HttpRequestParserPy:
        raise StartupError("aiohttp's C HTTP parser is not in use (AIOHTTP_NO_EXTENSIONS is set, or aiohttp "
                           "was installed without its compiled extensions); the pure-Python parser is laxer "
                           "about request smuggling, so the gateway does not start")


# The cyclic collector's first-generation threshold while serving (CPython's default: 700 allocations).
GC_YOUNG_THRESHOLD = 50_000


def settle_garbage_collector() -> None:
    """Freeze what startup built and run the cyclic collector less often, once the gateway serves.

    A request's objects are freed by reference counting when it ends; the cyclic collector
    finds none of them, yet at CPython's default threshold it ran every few requests and walked
    every young container each time, and its older generations walked the config, the route
    table and the imported modules again and again.  `gc.freeze()` moves all of those out of its
    sight; the higher threshold makes a young collection once per ~50,000 allocations (a few
    hundred requests).  bench.ab: CPU per request 0.81x -> 0.65x of the previous release
    (docs/performance.md).  Cyclic garbage (rare here: an exception's traceback) waits a little
    longer to be freed.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def serve_forever(config: GatewayConfig, options: ServeOptions | None = None) -> None:
    options = options or ServeOptions()
    gateway = Gateway(config, reuse_port=options.reuse_port)
    operations = Operations(gateway, options)  # admin listener, reloads, worker reports
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
        await operations.start()
        settle_garbage_collector()
        await stop.wait()
        log.info("shutting down: no new connections, finishing requests in flight")
    finally:
        await operations.stop()
        await gateway.stop()


def run(config: GatewayConfig, options: ServeOptions | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        asyncio.run(serve_forever(config, options))
    else:
        uvloop.run(serve_forever(config, options))
