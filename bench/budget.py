"""The CPU budget of one cache-hit request, step by step, timed in-process (issue 14).

    .venv/bin/python -m bench.budget [--rounds 7] [--iterations 20000] [--json FILE]

Each step of the filter's cache-hit path runs on its own, on realistic inputs (the
bench's token and config, the request wrk sends, the answer the static nginx upstream
gives), many times in a row; a round's figure is its CPU time (`time.process_time`,
user + system) divided by the iterations, and the printed figure is the median of the
rounds.  In-process CPU per call hardly moves with load from other processes, unlike
wrk runs, so these figures are the steady half of the budget; the other half is the
whole request measured under load (`bench.ab --floor`), and what the steps below do
not explain (uvloop, epoll, the fast path's own bookkeeping) is the difference.  The system calls are real ones on a loopback TCP connection.

Nothing here edits the gateway or starts a process; it imports the gateway's modules.
To time another copy of `gateway/`, run it from outside the repo with that copy first:
`cd /tmp && PYTHONPATH=/tmp/base:REPO REPO/.venv/bin/python -m bench.budget`, and alternate
copies over several runs, as with bench.ab.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import uvloop
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpRequestParser, HttpResponseParser
from multidict import CIMultiDict

from gateway.auth.authenticator import Authenticator
from gateway.auth.jwks_cache import JwksCache
from gateway.auth.token_cache import TokenCache
from gateway.config.loader.load import load_config
from gateway.observe import access_log
from gateway.observe.access_log import AccessRecord, request_id, safe_path
from gateway.observe.metrics import Metrics
from gateway.pipeline import decide
from gateway.ops.client_connection import PlainRequest, whole_answer
from gateway.pipeline.auth_filter import AuthFilter
from gateway.proxy.forwarder import Forwarder, answer_headers
from gateway.proxy.forwarded import is_trusted
from gateway.proxy.headers import upstream_request_headers
from gateway.proxy.websocket_relay import is_websocket_upgrade

from . import configs
from .tokens import BenchIssuer

STATIC_ANSWER = (  # what bench/configs.py's nginx `return 200` sends (nginx 1.22, keep-alive)
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 07:00:00 GMT\r\n"
    f"Content-Type: application/json\r\nContent-Length: {len(configs.ADMIN_BODY)}\r\n"
    f"Connection: keep-alive\r\n\r\n{configs.ADMIN_BODY}").encode()
LINES_PER_TURN = 32  # access log lines written together: one event-loop turn at wrk -c32


class _Connection:
    """What the fast path's request object copies from its connection (ops/client_connection.py)."""

    remote = "127.0.0.1"
    scheme = "http"
    transport = None


def cpu_us(call: Callable[[], object], iterations: int, rounds: int) -> tuple[float, list[float]]:
    """Median over rounds of CPU microseconds per call, and every round's figure.

    A call that returns a `Timed` reports the nanoseconds of its own measured part instead (wall time
    around one system call, where the call's other half, the far end's send, must not count).
    """
    for _ in range(min(iterations, 1000)):  # warm caches (lru_cache, metric children, the CPU's)
        call()
    figures = []
    for _ in range(rounds):
        timed = 0
        started = time.process_time()
        for _ in range(iterations):
            result = call()
            if type(result) is Timed:
                timed += result
        spent = timed / 1e9 if timed else time.process_time() - started
        figures.append(spent / iterations * 1e6)
    return statistics.median(figures), figures


class Timed(int):
    """Nanoseconds a step measured itself."""


@dataclass(frozen=True)
class Step:
    step: str  # the name for the step
    what: str  # what exactly is timed
    method: str  # the Budget method that does it once
    log_level: int | None = None  # the root logger's level while it is timed
    in_sum: bool = True


STEPS: list[Step] = []  # in the order a request takes them


def step(name: str, what: str, **options):
    """Marks a Budget method as one timed step of the cache-hit path."""
    def register(method):
        STEPS.append(Step(name, what, method.__name__, **options))
        return method
    return register


class Budget:
    """The cache-hit path's objects, built the way the gateway builds them, and one method per timed step."""

    def __init__(self, algorithm: str = "RS256"):
        self.issuer = BenchIssuer.create(algorithm)  # bench.miss_cost mints more tokens with it

    async def setup(self, work: Path) -> None:
        self.loop = asyncio.get_running_loop()
        issuer = self.issuer
        self.token = issuer.token(ttl=6 * 3600)
        self.config = load_config(configs.gateway(work, "budget", 8000, issuer.jwks(), (issuer.algorithm,)),
                                  dotenv=None)
        caches = {p.name: JwksCache(p, None) for p in self.config.providers}
        for cache in caches.values():
            await cache.start()
        self.authenticator = Authenticator(caches, TokenCache(self.config.limits.token_cache_entries))
        self.forwarder = Forwarder(self.config.upstream, self.config.limits, self.config.clients)
        self.forwarder.default_host = "127.0.0.1:8000"  # what start() sets; nothing is connected here
        self.filter = AuthFilter(self.config, self.authenticator, self.forwarder)
        self.raw_request = (f"GET /admin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                            f"Authorization: Bearer {self.token}\r\n\r\n").encode()  # what wrk sends
        self.protocol = BaseProtocol(self.loop)
        self.request_parser = HttpRequestParser(self.protocol, self.loop, 2 ** 16, max_line_size=8190,
                                                max_field_size=8190)
        self.response_parser = HttpResponseParser(self.protocol, self.loop, 2 ** 16, response_with_body=True,
                                                  auto_decompress=False, max_line_size=8190, max_field_size=8190)
        self.request = self.parse()
        self.path, self.query = decide.target(self.request.raw_path)
        self.route = decide.route_for(self.config.routes, "GET", self.path)
        self.identity = await self.authenticator.authenticate(self.extract(), self.route.providers)  # the miss
        assert self.cache_lookup() is not None  # the steps below are a cache hit's
        self.record = self.access_record()
        self.record.route, self.record.decision, self.record.reason = self.route.pattern, "allow", "forwarded"
        self.record.status, self.record.subject, self.record.verification = 200, self.identity.subject, "valid"
        self.record.upstream_ms, self.record.latency_ms = 0.41, 0.62
        self.upstream_headers = self.upstream_request_headers()
        self.head = self.upstream_head()
        self.answer, self.answer_body = self.upstream_parse()
        self.metrics = Metrics()
        self.client_bytes = self.client_answer()
        self.gateway_end, self.far_end = _loopback_pair()
        self.sends = 0
        self.log_sink = open("/dev/null", "w")  # noqa: SIM115 - closed in close()
        self.log_handler = access_log.configure("json", "WARNING", self.log_sink)  # as `serve` does, to /dev/null
        self.lines = 0

    def close(self) -> None:
        self.gateway_end.close()
        self.far_end.close()
        logging.getLogger().handlers[:] = []
        self.log_handler.flush()  # what waits for the end of the loop turn, before the sink closes
        self.log_sink.close()

    # -- the steps, in the order a request takes them ------------------------------------
    @step("parse", "client read: recv() of the request on loopback TCP (wall time of the call)")
    def client_read(self):
        """The client's request arriving (its send by the far end is not counted)."""
        self.far_end.send(self.raw_request)
        return self._timed_recv()

    @step("parse", "llhttp parse + the fast path's request object")
    def parse(self) -> PlainRequest:
        """llhttp reads the request; the fast path wraps it (ops/client_connection.py)."""
        (message, payload), = self.request_parser.feed_data(self.raw_request)[0]
        return PlainRequest(message, _Connection)

    @step("canonicalize", "decide.target: canonical path + query")
    def canonicalize(self):
        return decide.target(self.request.raw_path, self.config.allow_path_params)

    @step("match", "decide.route_for: route table")
    def match(self):
        return decide.route_for(self.config.routes, "GET", self.path)

    @step("extract", "the filter's credential: find_token (Authorization), no DPoP header")
    def extract(self):
        return self.filter._credential(self.request, self.route, [None])

    @step("cache lookup", "authenticator.cached_bearer: SHA-256, entry unpack, key still published, no binding")
    def cache_lookup(self):
        return self.authenticator.cached_bearer(self.token, self.route.providers)

    @step("rule", "decide.enforce: the route's rule on the identity")
    def rule(self):
        return decide.enforce(self.route, self.identity)

    @step("headers", "access record + request id")
    def access_record(self) -> AccessRecord:
        request = self.request
        return AccessRecord(request_id(request.headers.get("X-Request-Id")), request.method,
                            safe_path(request.raw_path))

    @step("headers", "upstream_request_headers: hygiene, identity, forwarding")
    def upstream_request_headers(self) -> CIMultiDict:
        request, config = self.request, self.config
        headers = upstream_request_headers(
            request.headers, self.identity, False, request.remote, request.scheme, config.identity_headers,
            trusted_peer=is_trusted(request.remote, config.clients.trusted_proxies), host=config.upstream.host,
            websocket=is_websocket_upgrade(request))
        headers["X-Request-Id"] = self.record.request_id
        return headers

    @step("upstream write", "request head as bytes (forwarder.bodiless_head)")
    def upstream_head(self) -> bytes:
        return self.forwarder.bodiless_head("GET", self.path, self.query, self.upstream_headers)

    @step("upstream write", "send() of the head on loopback TCP")
    def upstream_write(self):
        return self._send(self.head)

    @step("upstream parse", "upstream read: recv() of the answer (wall time of the call)")
    def upstream_read(self):
        """The upstream's answer arriving: the far end sends it (not counted), the gateway end reads it."""
        self.far_end.send(STATIC_ANSWER)
        return self._timed_recv()

    @step("upstream parse", "llhttp response parse + the body taken whole (read_nowait)")
    def upstream_parse(self):
        (message, payload), = self.response_parser.feed_data(STATIC_ANSWER)[0]
        return message, payload.read_nowait(-1)

    @step("client write", "answer headers (hop-by-hop dropped, Server) + head and body as one bytes object")
    def client_answer(self) -> bytes:
        """What the fast path writes: forwarder.answer_headers, then client_connection.whole_answer (aiohttp's C
        head serializer)."""
        return whole_answer(self.answer.code, self.answer.reason, answer_headers(self.answer.headers, None),
                            self.answer_body)

    @step("decision, whole", "AuthFilter.admit deciding: canonicalize to headers above, in one call (not in the sum)",
          in_sum=False)
    def decision(self):
        """The same steps as above in the order a request takes them: caches and branch predictors are colder
        than when each step repeats alone, so this is more than their sum."""
        self.filter.decisions.entries.clear()  # decide every time, as for a first request line with a token
        return self.filter.admit(self.request)

    @step("decision, remembered", "AuthFilter.admit from the decision cache: expiry and key re-checked, record, "
          "upstream headers (not in the sum)", in_sum=False)
    def decision_remembered(self):
        return self.filter.admit(self.request)

    @step("client write", "send() of the answer on loopback TCP")
    def client_write(self):
        return self._send(self.client_bytes)

    @step("log", "access_log.write at WARNING (the bench's level: off)", log_level=logging.WARNING)
    def log(self):
        """One access line; at INFO the JSON lines of one event-loop turn (LINES_PER_TURN) leave together."""
        access_log.write(self.record)
        self.lines += 1
        if self.lines % LINES_PER_TURN == 0:
            self.log_handler.flush()

    @step("metrics", "metrics.observe, per request")
    def observe_metrics(self):
        return self.metrics.observe(self.record)

    @step("log at INFO", f"access_log.write at INFO: a JSON line, written in batches of {LINES_PER_TURN} "
          "(not part of the sum)", log_level=logging.INFO, in_sum=False)
    def log_at_info(self):
        return self.log()

    # -- system calls -------------------------------------------------------------------
    def _send(self, data: bytes):
        """send() on the gateway's end; every 64 calls the far end reads what came (~1/64 of a recv counted)."""
        sent = self.gateway_end.send(data)
        self.sends += 1
        if self.sends % 64 == 0:
            while True:
                try:
                    self.far_end.recv(1 << 20, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
        return sent

    def _timed_recv(self) -> Timed:
        started = time.perf_counter_ns()
        self.gateway_end.recv(65536)
        return Timed(time.perf_counter_ns() - started)


def _loopback_pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair, non-Nagle as uvloop's transports are."""
    listener = socket.create_server(("127.0.0.1", 0))
    far = socket.create_connection(listener.getsockname())
    near, _ = listener.accept()
    listener.close()
    for end in (near, far):
        end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return near, far


async def measure(iterations: int, rounds: int) -> list[dict]:
    budget = Budget()
    with tempfile.TemporaryDirectory() as work:
        await budget.setup(Path(work))
    try:
        rows = []
        for entry in STEPS:
            if entry.log_level is not None:
                logging.getLogger().setLevel(entry.log_level)  # set once: setLevel clears the loggers' caches
            median, figures = cpu_us(getattr(budget, entry.method), iterations, rounds)
            rows.append({"step": entry.step, "what": entry.what, "cpu_us": round(median, 2),
                         "spread_us": round(max(figures) - min(figures), 2), "in_sum": entry.in_sum})
        return rows
    finally:
        budget.close()


def render(rows: list[dict]) -> str:
    lines = ["| step | what is timed | CPU us/request |", "| --- | --- | ---: |"]
    for row in rows:
        lines.append(f"| {row['step']} | {row['what']} | {row['cpu_us']:.2f} |")
    total = sum(row["cpu_us"] for row in rows if row["in_sum"])
    lines.append(f"| **sum of the steps** | (cache hit, access log off) | **{total:.1f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = uvloop.run(measure(args.iterations, args.rounds))
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
