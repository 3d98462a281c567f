"""The listener's protocol: the fast path for plain requests, aiohttp's RequestHandler for everything else.

Nearly all API traffic is a bodiless GET/DELETE/OPTIONS on a keep-alive HTTP/1.1
connection carrying a token the gateway has seen before.  For those, aiohttp's
server machinery (a task per request, the request object, StreamResponse) and
the coroutine frames between the pipeline's steps cost more CPU than the checks
themselves (docs/performance.md, "The CPU budget of a cache hit").  So each
connection starts here:

- requests are parsed by aiohttp's own C (llhttp) request parser, with the
  listener's limits;
- a plain request is decided by the filter's `admit` (the same steps as
  `handle`, with the identity from the token cache), written upstream on an idle
  pooled connection, and answered from the upstream connection's callback with
  one write: no task, no future, no coroutine;
- what needs waiting on the way runs in a task on this same connection, on a
  request object that reads like aiohttp's: a token to verify or a DPoP proof
  to check (`admit_pending`, then on as above), no idle upstream connection
  or an answer that streams (the forwarder's `send_bodiless` and `relay`);
- anything that is not a plain request (a body, an upgrade, `Expect`, `HEAD`,
  HTTP/1.0, `Connection: close`, a parse error, pipelined requests) hands the
  connection, with every byte not yet answered, to a fresh aiohttp
  RequestHandler for good, which parses those bytes again from the start.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Coroutine

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import HttpRequestParser, RawRequestMessage, RawResponseMessage
from aiohttp.http_writer import StreamWriter, _serialize_headers
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy

from gateway import errors
from gateway.observe.access_log import AccessRecord
from gateway.pipeline.auth_filter import Admission, Answered, AuthFilter, Pending
from gateway.proxy.client_errors import GatewayHttpServer
from gateway.proxy.forwarder import answer_headers, upstream_failure, whole_body_expected
from gateway.proxy.token_expiry import ENDED_BY
from gateway.proxy.upstream_client import IDEMPOTENT, UpstreamConnection, UpstreamGone

if TYPE_CHECKING:
    from gateway.ops.generation import Generation

log = logging.getLogger("gateway.clients")

SERVED_HERE = frozenset({"GET", "DELETE", "OPTIONS"})  # HEAD, bodies and the rest: aiohttp
READ_BUFSIZE = 2 ** 16
# unanswered bytes kept for a head still arriving; more is no plain request (or endless blank lines, which
# llhttp skips without limit and this class would keep until the idle timeout): aiohttp reads it on, keeping none
MAX_HEAD_BYTES = 2 ** 16
_BOUNDARY = b"\r\n\r\n"
INTERNAL_ERROR = errors.Rejection(500, "internal_error", "the gateway failed to handle this request; see its log")


def is_plain(message: RawRequestMessage, payload: StreamReader) -> bool:
    """A request this protocol serves itself: bodiless, keep-alive HTTP/1.1, nothing to negotiate."""
    return (payload is EMPTY_PAYLOAD and message.method in SERVED_HERE and message.version == HttpVersion11
            and not message.should_close and not message.upgrade and "Expect" not in message.headers
            and "Transfer-Encoding" not in message.headers)


class PlainRequest:
    """What the filter, the forwarder and aiohttp's responses read from a request, for a plain one."""

    __slots__ = ("_message", "method", "raw_path", "headers", "version", "protocol", "remote", "scheme", "transport",
                 "_writer")
    body_exists = False
    content = EMPTY_PAYLOAD
    keep_alive = True

    def __init__(self, message: RawRequestMessage, protocol: "ClientConnection"):
        self._message = message
        self.method, self.raw_path, self.headers, self.version = message.method, message.path, message.headers, \
            message.version
        self.protocol = protocol
        self.remote = protocol.remote
        self.scheme = protocol.scheme
        self.transport = protocol.transport
        self._writer: StreamWriter | None = None

    @property
    def writer(self) -> StreamWriter:
        if self._writer is None:  # only for an answer that goes through aiohttp's response classes
            self._writer = StreamWriter(self.protocol, self.protocol._loop)
        return self._writer

    _payload_writer = writer  # the name aiohttp's responses read

    @property
    def query(self) -> MultiDictProxy[str]:
        return self._message.url.query

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        """aiohttp's responses call this before writing their head (signals, in a web.Application)."""


class PlainExchange:
    """One admitted request on its way upstream; the upstream connection calls it back with the answer."""

    __slots__ = ("client", "request", "admission", "head", "started", "forwarding", "connection", "_done")

    def __init__(self, client: "ClientConnection", request: PlainRequest, admission: Admission, head: bytes,
                 started: float):
        self.client, self.request, self.admission, self.head, self.started = client, request, admission, head, started
        self.forwarding = time.monotonic()
        self.connection: UpstreamConnection | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def upstream_done(self) -> None:
        """The upstream's part is over (answered, failed or refused): its time goes on the access record."""
        self.admission.record.upstream_ms = (time.monotonic() - self.forwarding) * 1000

    def set_result(self, result: tuple[RawResponseMessage, StreamReader]) -> None:
        self._done = True
        self.client.upstream_answered(self, *result)

    def set_exception(self, exception: BaseException) -> None:
        self._done = True
        self.client.upstream_failed(self, exception)


class ClientConnection(BaseProtocol):
    def __init__(self, server: "FastHttpServer", loop: asyncio.AbstractEventLoop):
        limits = server.limits
        super().__init__(loop)
        self._parser = HttpRequestParser(self, loop, READ_BUFSIZE, max_line_size=limits.max_line_size,
                                         max_field_size=limits.max_field_size, max_headers=limits.max_headers)
        self.server = server
        self.remote: str | None = None
        self.scheme = "http"
        self.unanswered = bytearray()  # every byte since the last request boundary: what a handoff replays
        self.busy = False  # a request is being answered; bytes that arrive meanwhile wait, unparsed
        self.generation: Generation | None = None  # of the request being answered
        self.closing = False
        self.held = False  # reading paused by this class (not by aiohttp's flow control)
        self.task: asyncio.Task | None = None  # the general path's, for the request being answered
        # the idle timeout: one timer per connection; a connection must send a whole request head within
        # idle_timeout of its last answer (or of connecting), as aiohttp's keepalive_timeout bounds it
        self.idle_since = loop.time()
        self.idle_timer: asyncio.TimerHandle | None = None

    # -- transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, (list, tuple)) and peer else None
        self.scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        self.server.fast.add(self)
        self._arm_idle_timer(self.idle_since + self.server.idle_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.server.fast.discard(self)
        self.closing = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.unanswered += data
        if self.busy:  # pipelined behind the request being answered: read no further until it is
            self._hold()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            messages, upgraded, _ = self._parser.feed_data(data)
        except Exception:  # malformed: aiohttp parses it again and gives the precise JSON 4xx
            self._hand_off()
            return
        if not messages:
            if len(self.unanswered) > MAX_HEAD_BYTES:
                self._hand_off()
            return  # a head still arriving; the idle timer bounds how long
        if len(messages) > 1 or upgraded or not self.unanswered.endswith(_BOUNDARY) \
                or not is_plain(*messages[0]):
            self._hand_off()
            return
        self.unanswered.clear()
        self._serve(messages[0][0])

    # -- one request

    def _serve(self, message: RawRequestMessage) -> None:
        self.busy = True
        started = time.monotonic()
        generation = self.generation = self.server.current_generation()
        generation.enter()  # the request keeps these rules to the end (see ops/generation.py)
        request = PlainRequest(message, self)
        try:
            decided = generation.filter.admit(request)
        except Exception:  # a bug on the fast path: the general path answers (and logs) as it would have
            self._run(self._general(generation.filter, request))
            return
        if type(decided) is Pending:
            self._run(self._authenticate(request, decided, started))
        else:
            self._proceed(request, decided, started)

    async def _authenticate(self, request: PlainRequest, pending: Pending, started: float) -> None:
        """A token to verify (or a DPoP proof to check): the only wait before a fast path decision."""
        try:
            decided = await self.generation.filter.admit_pending(request, pending)
        except asyncio.CancelledError:
            pending.record.status, pending.record.reason = 499, "client_closed"
            self._finish(pending.record, started)
            raise
        except Exception as exc:  # no refusal: a bug or a surprise, a 500 as aiohttp's handle_error gives
            self._internal_error(pending.record, started, exc)
            return
        self._proceed(request, decided, started)

    def _proceed(self, request: PlainRequest, decided: Admission | Answered, started: float) -> None:
        """Answer a request the filter answered itself; send an admitted one upstream."""
        try:
            self._answer_or_send(request, decided, started)
        except Exception as exc:  # never expected; the request still gets an answer and the gateway serves on
            self._internal_error(decided.record, started, exc)

    def _answer_or_send(self, request: PlainRequest, decided: Admission | Answered, started: float) -> None:
        if type(decided) is Answered:
            self._answer_here(request, decided.response, decided.record, started)
            return
        forwarder = self.generation.filter.forwarder
        try:
            head = forwarder.bodiless_head(request.method, decided.path, decided.query, decided.headers)
        except errors.Rejection as rejection:
            self._refuse(request, decided.record, rejection, started, decided.cors_headers)
            return
        exchange = PlainExchange(self, request, decided, head, started)
        exchange.connection = forwarder.pool.try_send(request.method, head, exchange)
        if exchange.connection is None:  # no idle upstream connection, or every slot taken: wait for one
            self._run(self._answer_later(exchange, forwarder.send_bodiless(
                request, head, decided.record.request_id, decided.extra_headers, decided.expires_at)))

    def upstream_answered(self, exchange: PlainExchange, message: RawResponseMessage, payload: StreamReader) -> None:
        """The upstream's answer head (and, usually, its whole body) arrived: answer now, or relay it in a task."""
        request, admission = exchange.request, exchange.admission
        forwarder = self.generation.filter.forwarder
        if not (whole_body_expected(request.method, message.code, message.headers) and payload.is_eof()
                and payload.exception() is None):
            self._run(self._answer_later(exchange, forwarder.relay(
                request, admission.record.request_id, exchange.connection, message, payload,
                admission.extra_headers, admission.expires_at)))
            return
        record = admission.record
        try:
            answer = whole_answer(message.code, message.reason, answer_headers(message.headers, admission.extra_headers),
                                  payload.read_nowait(-1))
        except Exception as exc:  # aiohttp's serializer refuses control characters in the upstream's headers
            forwarder.pool.abandon(exchange.connection)
            self._internal_error(record, exchange.started, exc)
            return
        forwarder.pool.release(exchange.connection, message, payload)
        if self.transport is not None:  # None: the client left while its request was upstream
            self.transport.write(answer)
        exchange.upstream_done()
        record.status, record.reason = message.code, "forwarded"
        self._finish(record, exchange.started)

    def upstream_failed(self, exchange: PlainExchange, exc: BaseException) -> None:
        """No answer (closed, reset, timed out): a reused idle connection is retried once, fresh, as the
        pool's own `request` does; anything else is the client's 502/504."""
        request, admission = exchange.request, exchange.admission
        forwarder = self.generation.filter.forwarder
        forwarder.pool.abandon(exchange.connection)
        if isinstance(exc, UpstreamGone) and exchange.connection.reused and request.method in IDEMPOTENT:
            self._run(self._answer_later(exchange, forwarder.send_bodiless(
                request, exchange.head, admission.record.request_id, admission.extra_headers, admission.expires_at,
                fresh=True)))
            return
        exchange.upstream_done()
        self._refuse(request, admission.record, upstream_failure(exc), exchange.started, admission.cors_headers)

    async def _answer_later(self, exchange: PlainExchange, answering: Coroutine) -> None:
        """The rest of an admitted request on the general path's forwarder code."""
        record = exchange.admission.record
        try:
            response = await answering
        except errors.Rejection as rejection:
            exchange.upstream_done()
            self._refuse(exchange.request, record, rejection, exchange.started, exchange.admission.cors_headers)
            return
        except asyncio.CancelledError:
            record.status, record.reason = 499, "client_closed"
            self._finish(record, exchange.started)
            raise
        except Exception as exc:  # e.g. aiohttp's serializer refusing the upstream's headers for a streamed answer
            self._internal_error(record, exchange.started, exc, exchange.request)
            return
        exchange.upstream_done()
        record.status, record.reason = response.status, response.get(ENDED_BY, "forwarded")
        await self._write_and_finish(exchange.request, response, record, exchange.started)

    async def _general(self, flow: AuthFilter, request: PlainRequest) -> None:
        """The whole request on the general path, when `admit` itself failed: `handle` answers (or a JSON 500)."""
        try:
            response = await flow.handle(request)
        except Exception as exc:  # as aiohttp's handle_error: a JSON 500, logged, and the connection closes
            log.error("unhandled error for a request from %s", self.remote, exc_info=exc)
            response = INTERNAL_ERROR.response("")
            self.closing = True
        try:
            await self._write(request, response)
        except Exception as exc:  # never expected (handle made the answer): the connection closes
            log.error("writing the answer to %s failed", self.remote, exc_info=exc)
            self.closing = True
        finally:
            self._done()

    def _refuse(self, request: PlainRequest, record: AccessRecord, rejection: errors.Rejection, started: float,
                cors_headers: dict[str, str] | None = None) -> None:
        """`cors_headers`: an admitted request's route's, which the general path's refusal carries too."""
        response = self.generation.filter.refusal(request, record, rejection, cors_headers=cors_headers)
        self._answer_here(request, response, record, started)

    def _answer_here(self, request: PlainRequest, response: web.Response, record: AccessRecord,
                     started: float) -> None:
        """An answer the gateway made itself: in one write if it can, else through aiohttp's response code."""
        if _whole(response):
            self.write_whole(response.status, response.reason, response.headers, response.body)
            self._finish(record, started)
        else:
            self._run(self._write_and_finish(request, response, record, started))

    async def _write_and_finish(self, request: PlainRequest, response: web.StreamResponse, record: AccessRecord,
                                started: float) -> None:
        """Write an answer the general code made, then end its request; a write that fails (aiohttp's serializer
        refusing an upstream header) is the JSON 500, as the callback path gives it."""
        try:
            await self._write(request, response)
        except asyncio.CancelledError:
            self._finish(record, started)
            raise
        except Exception as exc:
            self._internal_error(record, started, exc, request)
            return
        self._finish(record, started)

    def _internal_error(self, record: AccessRecord, started: float, exc: Exception,
                        request: PlainRequest | None = None) -> None:
        """As aiohttp's handle_error for the general path: a JSON 500 (unless `request`'s answer has started),
        logged, and the connection closes."""
        log.error("unhandled error for a request from %s", self.remote, exc_info=exc)
        if request is None or request._writer is None or not request._writer.output_size:
            response = INTERNAL_ERROR.response("")
            response.headers["Connection"] = "close"  # as aiohttp's head says after handle_error's force_close()
            self.write_whole(response.status, response.reason, response.headers, response.body)
        self.closing = True
        record.status, record.reason = 500, INTERNAL_ERROR.code
        self._finish(record, started)

    def _finish(self, record: AccessRecord, started: float) -> None:
        record.latency_ms = (time.monotonic() - started) * 1000
        self.generation.filter.observe(record)
        self._done()

    def _done(self) -> None:
        """The request is answered: the next one may be read (or the connection handed off or closed)."""
        self.busy = False
        self.task = None
        self.generation.leave()
        self.generation = None
        if self.closing:
            if self.transport is not None:  # None: the client left first
                self.transport.close()
            return
        self.idle_since = self._loop.time()
        if self.writing_paused:  # the client reads slower than it asks: nothing more until it catches up
            self._hold()
            return
        self._next()

    def _next(self) -> None:
        """Read on: the request that waited behind the one just answered, then the socket again."""
        pending = bytes(self.unanswered)
        if self.held:
            self.held = False
            self.transport.resume_reading()
        if pending:
            self._feed(pending)

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.busy and not self.closing and self.held:
            self._next()

    # -- writing answers

    def write_whole(self, status: int, reason: str, headers: CIMultiDict, body: bytes) -> None:
        answer = whole_answer(status, reason, headers, body)
        if self.transport is not None:  # None: the client left while its request was answered
            self.transport.write(answer)

    async def _write(self, request: PlainRequest, response: web.StreamResponse) -> None:
        """An answer of the general path: small whole ones as `write_whole`, the rest through aiohttp."""
        try:
            if response.prepared:  # a streamed answer the relay has written already
                pass
            elif _whole(response):
                self.write_whole(response.status, response.reason, response.headers, response.body)
                if self.writing_paused:  # the client reads slower than we answer: wait, as aiohttp's writer does
                    await self._drain_helper()
            else:
                await response.prepare(request)
                await response.write_eof()
        except ConnectionError:
            self.closing = True
        if response.keep_alive is False:  # force_close(); None: never prepared, so nothing asked to close
            self.closing = True

    # -- the connection's life

    def _run(self, work: Coroutine) -> None:
        self.task = self._loop.create_task(work)

    def force_close(self) -> None:
        """Close now, after what is already written (the forwarder cuts a broken stream this way: nothing
        more, not even a terminating chunk, may follow)."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def close_when_idle(self) -> None:
        """Drain: an idle connection closes now, a busy one after its answer."""
        self.closing = True
        if not self.busy:
            self.transport.close()

    def abort(self) -> None:
        """Shutdown after the drain timeout: a request still running is cancelled, the connection closed."""
        self.closing = True
        if self.task is not None:
            self.task.cancel()
        self.transport.close()

    def _hand_off(self) -> None:
        """From now on aiohttp's RequestHandler serves this connection, from the first unanswered byte."""
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.server.fast.discard(self)
        self.closing = True
        replay, self.unanswered = bytes(self.unanswered), bytearray()
        handler = self.server.request_handler_for_handoff()
        transport = self.transport
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if replay:
            handler.data_received(replay)
        if self.held:
            self.held = False
            transport.resume_reading()

    def _hold(self) -> None:
        if not self.held:
            self.held = True
            self.transport.pause_reading()

    def _arm_idle_timer(self, when: float) -> None:
        self.idle_timer = self._loop.call_at(when, self._idle_check)

    def _idle_check(self) -> None:
        """No whole request within idle_timeout of the last answer (slowloris, or an idle keep-alive): hang up.
        The timer stays armed across requests and re-arms itself for the current deadline."""
        self.idle_timer = None
        if self.closing:
            return
        deadline = math.inf if self.busy else self.idle_since + self.server.idle_timeout
        if self._loop.time() >= deadline:
            self.closing = True
            self.transport.close()
            return
        self._arm_idle_timer(min(deadline, self._loop.time() + self.server.idle_timeout))


def whole_answer(status: int, reason: str, headers: CIMultiDict, body: bytes) -> bytes:
    """A small finished answer as one write: the head aiohttp's `web.Response` would give it (Content-Length,
    a default Content-Type, Date; Server is the gateway's), serialised by aiohttp's C serializer, which
    refuses CR/LF in names and values."""
    headers["Content-Length"] = str(len(body))
    if body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/octet-stream"
    if "Date" not in headers:
        headers["Date"] = rfc822_formatted_time()
    return _serialize_headers(f"HTTP/1.1 {status} {reason}", headers) + body


def _whole(response: web.StreamResponse) -> bool:
    """An unsent web.Response with a bytes body and none of what needs aiohttp's full path."""
    return (type(response) is web.Response and not response.prepared and type(response.body) is bytes
            and response.keep_alive is not False and 200 <= response.status and response.status not in (204, 304)
            and not response.cookies and not response.chunked and response.compression is False)


class FastHttpServer(GatewayHttpServer):
    """aiohttp's low-level server, whose connections start on the fast path above.

    `current_generation`: the rules serving now (the gateway swaps them on reload).
    """

    def __init__(self, handler, current_generation, *, limits, keepalive_timeout: float, **kwargs):
        super().__init__(handler, limits=limits, keepalive_timeout=keepalive_timeout, **kwargs)
        self.current_generation = current_generation
        self.idle_timeout = keepalive_timeout
        self.fast: set[ClientConnection] = set()  # connections still on the fast path

    def __call__(self) -> ClientConnection:
        return ClientConnection(self, self._loop)

    def request_handler_for_handoff(self) -> web.RequestHandler:
        return super().__call__()

    def pre_shutdown(self) -> None:
        super().pre_shutdown()
        for connection in list(self.fast):
            connection.close_when_idle()

    async def shutdown(self, timeout: float | None = None) -> None:
        for connection in list(self.fast):
            connection.abort()
        await super().shutdown(timeout)
