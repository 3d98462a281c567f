"""Prometheus metrics (prometheus-client): defined once, fed by the request path and the caches' counters.

Request metrics are counted as requests finish, in plain integers (a dict
increment and a bucket index: no prometheus-client lock or label lookup per
request), and handed to prometheus-client when the registry is collected (a
scrape) or synced.  JWKS and token-cache figures already live in the caches
(`JwksStats`, `TokenCache.hits`); they are copied into metrics by `sync`,
right before a scrape, or every second in a worker.  A worker, whose counts
the supervisor reads from prometheus-client's files, flushes at the end of
each event-loop turn that finished a request, so a scrape sees them at once.

Under `--workers N` prometheus-client's multiprocess mode (set up by the
supervisor through PROMETHEUS_MULTIPROC_DIR before this module is imported)
sums counters over the workers; gauges report the worst worker.
"""
from __future__ import annotations

import asyncio
import os
import time
from bisect import bisect_left
from typing import Iterable
from weakref import WeakKeyDictionary

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from gateway.observe.access_log import AccessRecord
from gateway.auth.jwks_cache import JwksCache
from gateway.auth.token_cache import TokenCache

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()  # one per gateway, so tests and embedders stay apart
        r = self.registry
        r.register(_CountedFirst(self))  # before the metrics it fills: a collect sees every request counted
        self.requests = Counter("gateway_requests", "Requests by route, method, decision and status",
                                ["route", "method", "decision", "status"], registry=r)
        self.upstream = Histogram("gateway_upstream_duration_seconds",
                                  "Time spent in the upstream exchange, body included, by route",
                                  ["route"], buckets=UPSTREAM_BUCKETS, registry=r)
        self.verifications = Counter("gateway_token_verifications",
                                     "Tokens examined, by outcome: valid or the rejection code", ["outcome"], registry=r)
        self.jwks_fetches = Counter("gateway_jwks_fetches", "JWKS fetch attempts", ["provider"], registry=r)
        self.jwks_failures = Counter("gateway_jwks_fetch_failures", "JWKS fetches that gave no usable keys",
                                     ["provider"], registry=r)
        self.jwks_keys = Gauge("gateway_jwks_keys", "Usable signing keys held", ["provider"],
                               multiprocess_mode="livemin", registry=r)
        self.jwks_age = Gauge("gateway_jwks_age_seconds", "Seconds since the keys were last fetched successfully",
                              ["provider"], multiprocess_mode="livemax", registry=r)
        self.reloads = Counter("gateway_config_reloads", "routes.yaml versions applied or refused", ["result"],
                               registry=r)
        self.token_cache = Counter("gateway_token_cache_lookups", "Token cache lookups by result", ["result"],
                                   registry=r)
        self.tls_expiry = Gauge("gateway_tls_certificate_expiry_timestamp_seconds",
                                "When the certificate the public listener serves expires (epoch seconds)",
                                multiprocess_mode="livemin", registry=r)
        for result in ("accepted", "refused"):
            self.reloads.labels(result)
        self._children: dict[tuple, object] = {}  # labelled children, looked up once per distinct labels
        # since the last flush: (route, method, decision, status, verification) -> requests; and
        # route -> [requests per upstream bucket (+Inf last)..., seconds]
        self._finished: dict[tuple, int] = {}
        self._upstream_seconds: dict[str, list] = {}
        self._flush_each_turn = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))  # a --workers worker
        self._flush_scheduled = False
        self._seen: WeakKeyDictionary = WeakKeyDictionary()
        self._providers: set[str] = set()

    def add_process_metrics(self) -> None:
        ProcessCollector(registry=self.registry)

    def observe(self, record: AccessRecord) -> None:
        """Count a finished request (on the hot path: plain integers, see `flush`)."""
        method = record.method if record.method in KNOWN_METHODS else "OTHER"  # clients choose methods: bounded
        key = (record.route, method, record.decision, record.status, record.verification)
        finished = self._finished
        finished[key] = finished.get(key, 0) + 1
        if record.upstream_ms is not None:
            seconds = record.upstream_ms / 1000.0
            histogram = self._upstream_seconds.get(record.route)
            if histogram is None:
                histogram = self._upstream_seconds[record.route] = [0] * (len(UPSTREAM_BUCKETS) + 2)
            histogram[bisect_left(UPSTREAM_BUCKETS, seconds)] += 1  # the first bucket with seconds <= bound
            histogram[-1] += seconds
        if self._flush_each_turn and not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand what `observe` counted to prometheus-client (its files under --workers)."""
        self._flush_scheduled = False
        finished, self._finished = self._finished, {}
        verified: dict[str, int] = {}
        for (route, method, decision, status, verification), count in finished.items():
            _child(self._children, self.requests, route or "-", method, decision, str(status)).inc(count)
            if verification is not None:
                verified[verification] = verified.get(verification, 0) + count
        for outcome, count in verified.items():
            _child(self._children, self.verifications, outcome).inc(count)
        durations, self._upstream_seconds = self._upstream_seconds, {}
        for route, histogram in durations.items():
            child = _child(self._children, self.upstream, route or "-")
            # prometheus-client's Histogram.observe adds 1 to one bucket (they are summed at collect
            # time) and the value to the sum; these are the same values, added n at a time
            for bucket, count in zip(child._buckets, histogram):
                if count:
                    bucket.inc(count)
            child._sum.inc(histogram[-1])

    def tls_certificate(self, not_after: float) -> None:
        self.tls_expiry.set(not_after)

    def reload(self, accepted: bool) -> None:
        self.reloads.labels("accepted" if accepted else "refused").inc()

    def sync(self, caches: Iterable[JwksCache], token_cache: TokenCache) -> None:
        """Copy the caches' own counters in, as increments since the last sync, and the requests counted."""
        self.flush()
        now = time.time()
        caches = list(caches)
        names = {cache.provider.name for cache in caches}
        for gone in self._providers - names:  # a reload removed the provider
            for gauge in (self.jwks_keys, self.jwks_age):
                try:
                    gauge.remove(gone)
                except KeyError:
                    pass
        self._providers = names
        for cache in caches:
            name = cache.provider.name
            stats = cache.stats
            fetches, failures = self._seen.get(cache, (0, 0))
            self.jwks_fetches.labels(name).inc(stats.fetches - fetches)
            self.jwks_failures.labels(name).inc(stats.failures - failures)
            self._seen[cache] = (stats.fetches, stats.failures)
            self.jwks_keys.labels(name).set(stats.key_count if cache.loaded else 0)
            if stats.last_success is not None:
                self.jwks_age.labels(name).set(max(0.0, now - stats.last_success))
        hits, misses = self._seen.get(token_cache, (0, 0))
        self.token_cache.labels("hit").inc(token_cache.hits - hits)
        self.token_cache.labels("miss").inc(token_cache.misses - misses)
        self._seen[token_cache] = (token_cache.hits, token_cache.misses)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CountedFirst:
    """Registered ahead of the metrics: any collect (a scrape, `render`) first flushes the requests counted."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self) -> list:
        return []  # names nothing, so registering it collects nothing

    def collect(self) -> list:
        self.metrics.flush()
        return []


def _child(children: dict[tuple, object], metric, *labels: str):
    """The labelled child of `metric`, looked up once per distinct label values."""
    key = (metric, *labels)
    child = children.get(key)
    if child is None:
        child = children[key] = metric.labels(*labels)
    return child


def render_multiprocess(directory: str) -> bytes:
    """Every worker's metrics, summed, from prometheus-client's multiprocess files."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)
