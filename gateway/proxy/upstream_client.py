"""A lean keep-alive client for bodiless upstream requests, on aiohttp's own C response parser.

aiohttp's ClientSession spends about 40% of the gateway's CPU per request on
generality a proxy does not need (URL handling, cookie jars, redirects, per
request timeout objects).  Requests without a body (nearly all API reads) go
through this pool instead: it writes the request head once and hands the
bytes it reads to aiohttp's llhttp-based `HttpResponseParser`, so no HTTP
parsing is written here.  Everything else (bodies, upgrades, HEAD) keeps
using the ClientSession.  An https upstream is reached over TLS with the
config's one verified SSLContext, exactly as the ClientSession reaches it.
"""
from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections import deque
from typing import Protocol

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpResponseParser, RawResponseMessage
from aiohttp.streams import StreamReader

from gateway import errors

log = logging.getLogger("gateway.forwarder")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT", "TRACE"})


class AnswerWaiter(Protocol):
    """What waits for an upstream answer: an asyncio future, or anything with the same three methods."""

    def done(self) -> bool: ...
    def set_result(self, result: tuple[RawResponseMessage, StreamReader]) -> None: ...
    def set_exception(self, exception: BaseException) -> None: ...


class Slots(asyncio.Semaphore):
    """Requests in flight; `try_acquire` is `acquire`'s no-wait case, for callers that cannot await."""

    def try_acquire(self) -> bool:
        if self._value <= 0 or self._waiters:  # `locked()`, without its generator over the waiters
            return False
        self._value -= 1  # what Semaphore.acquire does when it need not wait
        return True


class UpstreamGone(ConnectionError):
    """The connection closed or failed before a whole response head arrived."""


def tls_failure(exc: Exception) -> errors.Rejection:
    """502 upstream_tls_error for any client of the upstream; which check failed goes to the log, for the operator."""
    log.warning("TLS to the upstream failed: %s", exc)
    return errors.upstream_tls_error()


class UpstreamConnection(BaseProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, pool: "UpstreamPool"):
        super().__init__(loop)
        self.pool = pool
        self.parser = HttpResponseParser(self, loop, 2 ** 16, response_with_body=True, auto_decompress=False,
                                         max_line_size=pool.max_line_size, max_field_size=pool.max_field_size)
        self._parser = self.parser  # BaseProtocol's flow control pauses and resumes it (backpressure)
        self.waiter: AnswerWaiter | None = None
        self.payload: StreamReader | None = None
        self.reused = False
        self.closed = False
        self.idle_since = 0.0  # loop time it went back to the pool
        # read_timeout: one timer per connection, not per request (a uvloop timer costs ~3 us to arm and
        # cancel); it stays armed between requests and, firing before the current deadline, re-arms
        self.deadline = math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    def data_received(self, data: bytes) -> None:
        try:
            messages, _, _ = self.parser.feed_data(data)
        except Exception as exc:  # a malformed answer: this connection is done
            self._fail(UpstreamGone(f"malformed upstream response: {exc.__class__.__name__}"))
            self.transport.close()
            return
        for message, payload in messages:
            if 100 <= message.code < 200:  # 103 Early Hints and the like: the final answer follows
                continue
            if self.waiter is not None and not self.waiter.done():
                self.payload = payload
                self.waiter.set_result((message, payload))
            else:  # an answer nobody asked for: never reuse this connection
                self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pool.forget(self)
        try:
            self.parser.feed_eof()  # ends a read-until-close body, or marks a short one as broken
        except Exception as error:
            if self.payload is not None and not self.payload.is_eof():
                self.payload.set_exception(UpstreamGone(str(error)))
        if self.payload is not None and not self.payload.is_eof():
            self.payload.set_exception(UpstreamGone("upstream closed the connection mid-body"))
        # a TLS alert (a refused client certificate, in TLS 1.3 after the handshake) keeps its cause
        self._fail(exc if isinstance(exc, ssl.SSLError) else UpstreamGone("upstream closed the connection"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def exchange(self, head: bytes, timeout: float) -> tuple[RawResponseMessage, StreamReader]:
        waiter = self._loop.create_future()
        self.send(head, timeout, waiter)
        return await waiter

    def send(self, head: bytes, timeout: float, waiter: AnswerWaiter) -> None:
        """Write a request head; `waiter` gets (message, payload) once the answer's head is parsed, or the failure.

        A future for `exchange`, or the fast path's own callback object (ops/client_connection.py).
        """
        self.waiter = waiter
        self.payload = None
        self.transport.write(head)
        if not timeout > 0:  # as aiohttp's sock_read: 0 sets no limit
            self.deadline = math.inf
            return
        self.deadline = self._loop.time() + timeout
        if self.deadline < self.timer_at:  # none armed (or one armed for later): arm it for this deadline
            self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = self.deadline
        self.timer = self._loop.call_at(self.deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        """The waiting request's deadline reached: it fails; not yet (a later request's): wait for it."""
        self.timer, self.timer_at = None, math.inf
        waiter = self.waiter
        if waiter is None or waiter.done() or self.deadline == math.inf:
            return  # idle, answered, or no limit: the next exchange arms the timer again
        if self._loop.time() >= self.deadline:
            waiter.set_exception(TimeoutError("no answer from the upstream within read_timeout"))
        else:
            self._arm()


class UpstreamPool:
    """Idle keep-alive connections to one upstream (TCP host:port, TLS over TCP, or a Unix socket).

    `keepalive`: seconds a connection may sit idle and still be reused; keep it below the
    upstream's own keep-alive timeout, so the gateway drops a connection before the upstream
    closes it under a request.  `tls`: the SSLContext for an https upstream (certificate and
    host name verified, `server_name` instead of `host` when set); None means plain TCP.
    """

    def __init__(self, host: str | None, port: int | None, unix_path: str | None, size: int,
                 connect_timeout: float, read_timeout: float, max_line_size: int = 8190,
                 max_field_size: int = 16384, *, keepalive: float = math.inf,
                 tls: ssl.SSLContext | None = None, server_name: str | None = None):
        self.host, self.port, self.unix_path = host, port, unix_path
        self.size = size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self.tls = tls
        self.server_name = (server_name or host) if tls is not None else None
        self.max_line_size, self.max_field_size = max_line_size, max_field_size
        self.idle: deque[UpstreamConnection] = deque()
        self.open: set[UpstreamConnection] = set()
        self.slots = Slots(size)  # requests in flight, as aiohttp's connector limit: the upstream's
        # worker count, not the client count, bounds how many connections it has to hold

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout if self.connect_timeout > 0 else None):  # as aiohttp
            if self.unix_path is not None:
                _, connection = await loop.create_unix_connection(lambda: UpstreamConnection(loop, self), self.unix_path)
            else:
                _, connection = await loop.create_connection(lambda: UpstreamConnection(loop, self), self.host, self.port,
                                                             ssl=self.tls, server_hostname=self.server_name)
        self.open.add(connection)
        return connection

    def _take_idle(self) -> UpstreamConnection | None:
        """The most recently used live connection, unless it has been idle for `keepalive` or longer.

        Last in, first out: if the newest idle connection has outlived `keepalive`, so have all the others.
        """
        stale_before = asyncio.get_running_loop().time() - self.keepalive
        while self.idle:
            connection = self.idle.pop()
            if connection.closed or connection.transport.is_closing():
                continue
            if connection.idle_since <= stale_before:
                for expired in (connection, *self.idle):
                    expired.transport.close()
                self.idle.clear()
                return None
            connection.reused = True
            return connection
        return None

    async def request(self, method: str, head: bytes, fresh: bool = False
                      ) -> tuple[UpstreamConnection, RawResponseMessage, StreamReader]:
        """Send a bodiless request; a reused connection the upstream had closed is retried once, fresh.

        Takes a slot that `release` gives back; on failure the slot is given back here.  `fresh`: on a
        new connection (the retry of a `try_send` whose reused connection the upstream had closed).
        """
        await self.slots.acquire()
        try:
            connection = (None if fresh else self._take_idle()) or await self._connect()
            try:
                message, payload = await self._exchange(connection, head)
            except UpstreamGone:
                if not connection.reused or method not in IDEMPOTENT:
                    raise
                connection = await self._connect()
                message, payload = await self._exchange(connection, head)
        except BaseException:
            self.slots.release()
            raise
        return connection, message, payload

    def try_send(self, method: str, head: bytes, waiter: AnswerWaiter) -> UpstreamConnection | None:
        """`request` for a caller that cannot wait: sent on an idle connection with a free slot, or None.

        The waiter gets the answer (or the failure) as `request` would; `release` gives the slot back.
        A reused connection the upstream had closed is not retried here: the caller retries through
        `request`, which connects afresh.
        """
        if not self.idle or not self.slots.try_acquire():
            return None
        connection = self._take_idle()
        if connection is None:
            self.slots.release()
            return None
        connection.send(head, self.read_timeout, waiter)
        return connection

    def abandon(self, connection: UpstreamConnection) -> None:
        """A `try_send` whose answer failed or was not waited for: the connection's state is unknown; close it."""
        self.slots.release()
        if connection.transport is not None:
            connection.transport.close()

    async def _exchange(self, connection: UpstreamConnection, head: bytes) -> tuple[RawResponseMessage, StreamReader]:
        try:
            return await connection.exchange(head, self.read_timeout)
        except BaseException:  # timed out, cancelled or broken: the connection's state is unknown, never reuse it
            if connection.transport is not None:
                connection.transport.close()
            raise

    def release(self, connection: UpstreamConnection, message: RawResponseMessage, payload: StreamReader) -> None:
        """Back to the pool only when the answer was read to its end and may be followed by another."""
        self.slots.release()
        reusable = (not connection.closed and not message.should_close and payload.is_eof()
                    and payload.exception() is None and len(self.idle) < self.size)
        if reusable:
            connection.waiter = connection.payload = None
            connection.idle_since = asyncio.get_running_loop().time()
            self.idle.append(connection)
        else:
            connection.transport.close()

    def forget(self, connection: UpstreamConnection) -> None:
        self.open.discard(connection)
        try:
            self.idle.remove(connection)
        except ValueError:
            pass

    def close(self) -> None:
        for connection in list(self.open):
            connection.transport.close()
        self.idle.clear()
