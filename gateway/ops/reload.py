"""Live reload of routes.yaml: validate fully, fetch new keys, then swap between requests.

A new version goes through the same load and lint as `gateway check`; any
error refuses it (logged with file:line, counted) and the running rules keep
serving; so does any unexpected exception in an attempt, which is logged
with its reason and never stops the watcher.  Providers that are unchanged keep their caches, so their keys and
verified tokens carry over; an added or changed provider gets a fresh cache
whose keys must arrive before the swap, or the version is refused.  The swap
itself is one assignment: requests already running finish under the rules
they started with, and caches only they used are stopped once they drain.

The file is polled (a content hash), which needs no dependency and
also sees Kubernetes ConfigMap updates (a symlink swap).  A version is acted
on once two polls in a row read the same bytes, so a half-written file is
not mistaken for a broken one.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Callable, Iterable

from gateway.config.model import GatewayConfig, ProviderConfig
from gateway.config.loader import ConfigError
from gateway.auth.jwks_cache import FetchError, JwksCache
from gateway.auth.token_cache import TokenCache

log = logging.getLogger("gateway.reload")

Loader = Callable[[], tuple[GatewayConfig, list[str]]]


def file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ConfigWatch:
    """Says when the file holds new, settled content."""

    def __init__(self, path: str | Path, seen: str | None = None):
        self.path = Path(path)
        self.seen = seen or file_digest(self.path)  # the version already acted on
        self._last = self.seen

    def poll(self) -> bool:
        digest = file_digest(self.path)
        previous, self._last = self._last, digest
        if digest is None or digest != previous or digest == self.seen:
            return False
        self.seen = digest
        return True


def same_provider(a: ProviderConfig, b: ProviderConfig) -> bool:
    """Equal for verification: where it is written and its declared scope list do not matter."""
    return dataclasses.replace(a, line=0, scopes=None) == dataclasses.replace(b, line=0, scopes=None)


def restart_only_changes(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """Settings a running process cannot take over: they keep their old value until a restart."""
    changed = []
    if (old.listen_host, old.listen_port) != (new.listen_host, new.listen_port):
        changed.append("listen")
    live = {"upstream": {"host": None}, "clients": {"trusted_proxies": ()}}  # read per request: these do apply
    for name in ("upstream", "admin", "reload", "clients"):
        before, after = getattr(old, name, None), getattr(new, name, None)
        if name in live and before is not None and after is not None:
            before, after = (dataclasses.replace(v, **live[name]) for v in (before, after))
        if before != after:
            changed.append(name)
    if old.tls != new.tls and (old.tls is None or new.tls is None
                               or dataclasses.replace(old.tls, not_after=0, line=0)
                               != dataclasses.replace(new.tls, not_after=0, line=0)):
        changed.append("tls (the files' contents rotate live; paths and modes need a restart)")
    if dataclasses.replace(old.limits, max_token_bytes=0) != dataclasses.replace(new.limits, max_token_bytes=0):
        changed.append("limits (other than max_token_bytes)")
    return changed


class Reloader:
    def __init__(self, gateway, load: Loader, path: str | Path, metrics, warnings: Iterable[str] = ()):
        self.gateway = gateway
        self.load = load
        self.path = Path(path)
        self.metrics = metrics
        self.digest = file_digest(self.path)  # of the version being served
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.said: set[str] = set(warnings)  # lint warnings are logged once per process, not on every reload

    async def reload(self, trigger: str) -> bool:
        """One attempt; never raises (but for cancellation), so neither the watcher nor SIGHUP can be stopped."""
        async with self._lock:
            try:
                accepted = await self._reload(trigger)
            except Exception as exc:  # a bug or an input nobody foresaw costs this version only
                log.error("reload (%s) refused: unexpected %s: %s; the running rules stay in force",
                          trigger, exc.__class__.__name__, exc, exc_info=True)
                accepted = False
        self.metrics.reload(accepted)
        return accepted

    async def _reload(self, trigger: str) -> bool:
        digest = file_digest(self.path)
        try:
            config, warnings = self.load()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            log.error("reload (%s) refused: %d problem(s); the running rules stay in force", trigger, len(exc.problems))
            return False
        gateway = self.gateway
        current: dict[str, JwksCache] = gateway.caches
        caches: dict[str, JwksCache] = {}
        fresh: list[JwksCache] = []
        for provider in config.providers:
            old = current.get(provider.name)
            if old is not None and same_provider(old.provider, provider):
                caches[provider.name] = old
            else:
                caches[provider.name] = JwksCache(provider, gateway.idp_session)
                caches[provider.name].in_service = False  # until the swap: a failure refuses the reload only
                fresh.append(caches[provider.name])
        missing = await self._fetch_keys(fresh)
        if missing:
            for cache in fresh:
                await cache.stop()
            for reason in missing:
                log.error("reload refused: %s", reason)
            log.error("reload (%s) refused: new providers must have keys before the swap; "
                      "the running rules stay in force", trigger)
            return False
        for warning in warnings:
            if warning not in self.said:
                log.warning("reload: %s", warning)
        self.said.update(warnings)
        for name, cache in caches.items():
            if cache not in fresh and not cache.loaded:
                log.warning("reload: provider %r still has no keys: %s", name, cache.stats.last_error)
        for setting in restart_only_changes(gateway.config, config):
            log.warning("reload: %s changed in %s; it takes effect only after a restart", setting, config.source)
        same_set = not fresh and caches.keys() == current.keys()
        token_cache = gateway.token_cache if same_set else TokenCache(gateway.config.limits.token_cache_entries)
        # (identities are verified under one provider config: a changed provider starts afresh)
        for cache in fresh:
            cache.in_service = True
        old = gateway.activate(config, caches, token_cache)
        self.digest = digest
        log.info("reload (%s) applied: %d provider(s), %d route(s)%s", trigger, len(config.providers),
                 len(config.routes.routes), f", {len(fresh)} with new keys" if fresh else "")
        retired = [c for name, c in current.items() if caches.get(name) is not c]
        if old is not None and retired:
            self._spawn(self._retire(old, retired))
        return True

    async def _fetch_keys(self, fresh: list[JwksCache]) -> list[str]:
        started = []
        for cache in fresh:
            try:
                await cache.start()
                started.append(cache)
            except FetchError as exc:  # static keys, none usable
                cache.stats.last_error = str(exc)
        await asyncio.gather(*(c.wait_loaded(c.policy.timeout + 1.0) for c in started))
        return [f"provider {c.provider.name!r}: keys could not be fetched: {c.stats.last_error or 'no answer in time'}"
                for c in fresh if not c.loaded]

    async def _retire(self, old, caches: list[JwksCache]) -> None:
        """Stop caches the new rules dropped, once the requests that may still use them are done."""
        try:
            if not await old.drained(self.gateway.config.upstream.read_timeout + 5.0):
                log.warning("reload: %d request(s) of the previous rules still running; "
                            "stopping their caches anyway", old.inflight)
        finally:
            for cache in caches:
                await cache.stop()

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def request(self, trigger: str) -> None:
        """Schedule a reload from a signal handler."""
        self._spawn(self.reload(trigger))

    async def watch(self, interval: float) -> None:
        watch = ConfigWatch(self.path, seen=self.digest)  # an edit made since the start is not missed
        while True:
            await asyncio.sleep(interval)
            if watch.poll():
                await self.reload("file changed")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
