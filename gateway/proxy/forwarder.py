"""Forwarder: sends an allowed request upstream over pooled keep-alive connections and streams the answer back.

The upstream URL is built with `encoded=True` from the canonical path, so the
bytes the route table judged are exactly the bytes the upstream routes on.
Bodies stream both ways with backpressure (see body_stream for the request
side).  A failure before the response starts is a JSON 502 (refused, reset)
or 504 (connect or read timeout); after it started, the client connection is
cut without a terminating chunk, so a truncated body never looks complete.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

import aiohttp
from aiohttp import web
from aiohttp.http_parser import RawResponseMessage
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import errors
from gateway.proxy.body_stream import BodyAborted, RequestBody
from gateway.config.model import ClientConfig, Limits, UpstreamConfig
from gateway.proxy.headers import downstream_response_headers
from gateway.proxy.token_expiry import ENDED_BY, SSE_TOKEN_EXPIRED, STREAM_EXPIRED, expired, until_expiry
from gateway.proxy.upstream_client import UpstreamConnection, UpstreamGone, UpstreamPool, tls_failure
from gateway.proxy.websocket_relay import WebSocketRelay, is_websocket_upgrade

log = logging.getLogger("gateway.forwarder")

SMALL_BODY = 256 * 1024  # read whole before answering, so a failure can still be a clean 502


class Forwarder:
    def __init__(self, config: UpstreamConfig, limits: Limits = Limits(), clients: ClientConfig = ClientConfig()):
        self.config = config
        self.limits = limits
        self.clients = clients
        self.base = "http://localhost" if config.url.startswith("unix:") else config.url.rstrip("/")
        self.session: aiohttp.ClientSession | None = None  # HEAD and WebSocket upgrades, kept alive
        self.uploads: aiohttp.ClientSession | None = None  # requests with a body: one fresh connection each
        self.pool: UpstreamPool | None = None
        self.websockets: WebSocketRelay | None = None

    async def start(self) -> None:
        parts = URL(self.base)
        unix = self.config.url[5:] if self.config.url.startswith("unix:") else None
        if parts.scheme == "https" and self.config.tls is None:
            raise ValueError("an https upstream needs the SSLContext the config loader builds (UpstreamConfig.tls)")
        self.session = self._session(force_close=False)
        self.uploads = self._session(force_close=True)
        self.websockets = WebSocketRelay(self.session, self.limits.max_ws_message_bytes, self.config.server_name)
        self.pool = UpstreamPool(parts.host, parts.port, unix, self.config.pool_size, self.config.connect_timeout,
                                 self.config.read_timeout, keepalive=self.config.keepalive, tls=self.config.tls,
                                 server_name=self.config.server_name)
        self.default_host = "localhost" if unix else parts.raw_authority

    def _session(self, force_close: bool) -> aiohttp.ClientSession:
        """An aiohttp client for the upstream; `force_close`: every connection carries one request, then closes."""
        if self.config.url.startswith("unix:"):
            connector = aiohttp.UnixConnector(path=self.config.url[5:], limit=self.config.pool_size,
                                              keepalive_timeout=None if force_close else self.config.keepalive,
                                              force_close=force_close)
        else:
            connector = aiohttp.TCPConnector(limit=self.config.pool_size, ttl_dns_cache=300,
                                             keepalive_timeout=None if force_close else self.config.keepalive,
                                             force_close=force_close, ssl=self.config.tls or True)
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout,
                                          sock_read=self.config.read_timeout),
        )

    async def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for session in (self.session, self.uploads):
            if session is not None:
                await session.close()

    async def forward(self, request: web.BaseRequest, path: str, query: str,
                      headers: CIMultiDict, extra_headers: dict[str, str] | None = None,
                      expires_at: float | None = None) -> web.StreamResponse:
        """`expires_at`: when the token that authorized this request expires; streams end then (token_expiry)."""
        websocket = is_websocket_upgrade(request)
        if not websocket and not request.body_exists and request.method != "HEAD":
            return await self._forward_bodiless(request, path, query, headers, extra_headers, expires_at)
        url = URL(self.base + path + ("?" + query if query else ""), encoded=True)
        if websocket:
            return await self.websockets.relay(request, url, headers, expires_at)
        body = RequestBody(request, self.limits.max_body_bytes, self.clients.body_timeout, expires_at)
        # A request with a body never rides a kept-alive connection, either way: an upstream may answer
        # before reading the body (a refusal, 405 from a GET-only view), announce keep-alive and then
        # close (gunicorn does, over 64 KiB unread), so the next request on that connection would fail,
        # and a streamed body cannot be sent again.  A fresh connection per body removes both races.
        session = self.uploads if request.body_exists else self.session
        try:
            async with session.request(request.method, url, headers=headers, data=body.source(),
                                       allow_redirects=False, server_hostname=self.config.server_name) as upstream:
                # aiohttp's own sock_read timer bounds each read here
                return await _relay_answer(request, headers["X-Request-Id"], upstream.status, upstream.reason, upstream.headers,
                                           upstream.content, extra_headers, None, expires_at)
        except (aiohttp.ClientError, asyncio.TimeoutError, BodyAborted) as exc:
            if body.failure is not None:
                raise body.failure from None
            raise upstream_failure(exc) from None

    async def _forward_bodiless(self, request: web.BaseRequest, path: str, query: str, headers: CIMultiDict,
                                extra_headers: dict[str, str] | None, expires_at: float | None) -> web.StreamResponse:
        """The common case on the lean pool: one write out, aiohttp's C parser on the way back."""
        head = self.bodiless_head(request.method, path, query, headers)
        return await self.send_bodiless(request, head, headers["X-Request-Id"], extra_headers, expires_at)

    def bodiless_head(self, method: str, path: str, query: str, headers: CIMultiDict) -> bytes:
        """The upstream request head of a bodiless request, as the bytes written to the upstream."""
        lines = [f"{method} {path}{'?' + query if query else ''} HTTP/1.1"]
        if "Host" not in headers:
            lines.append(f"Host: {self.default_host}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("\r\n")
        text = "\r\n".join(lines)
        if text.count("\n") != len(lines) or text.count("\r") != len(lines) or "\0" in text:
            raise errors.upstream_unavailable()  # never reached: parsed and verified values hold no CR/LF
        # a client's header bytes that are not UTF-8 reach the upstream as they came (aiohttp's parser kept
        # them as surrogate escapes), not refused and not dropped
        return text.encode("utf-8", "surrogateescape")

    async def send_bodiless(self, request: web.BaseRequest, head: bytes, request_id: str,
                            extra_headers: dict[str, str] | None, expires_at: float | None,
                            fresh: bool = False) -> web.StreamResponse:
        """`head` to the upstream over the lean pool (waiting for a connection if none is idle) and its answer back;
        `fresh`: on a new connection (`UpstreamPool.request`)."""
        try:
            connection, message, payload = await self.pool.request(request.method, head, fresh)
        except (TimeoutError, OSError, UpstreamGone) as exc:
            raise upstream_failure(exc) from None
        return await self.relay(request, request_id, connection, message, payload, extra_headers, expires_at)

    async def relay(self, request: web.BaseRequest, request_id: str, connection: UpstreamConnection,
                    message: RawResponseMessage, payload: StreamReader, extra_headers: dict[str, str] | None,
                    expires_at: float | None) -> web.StreamResponse:
        """An answer from the lean pool to the client; the connection goes back to the pool (or closes) after."""
        try:
            return await _relay_answer(request, request_id, message.code, message.reason, message.headers, payload,
                                       extra_headers, self.config.read_timeout, expires_at)
        except (TimeoutError, OSError, UpstreamGone, aiohttp.ClientPayloadError) as exc:
            raise upstream_failure(exc) from None
        finally:
            self.pool.release(connection, message, payload)


def upstream_failure(exc: Exception) -> errors.Rejection:
    """The client's answer when an upstream exchange (lean pool or aiohttp's client) fails before the answer
    started: 504 for a timeout, 502 upstream_tls_error for TLS, 502 otherwise."""
    if isinstance(exc, TimeoutError):  # before OSError, of which it is a subclass
        return errors.upstream_timeout()
    if isinstance(exc, (ssl.SSLError, aiohttp.ClientSSLError)):  # before OSError too
        return tls_failure(exc)
    return errors.upstream_unavailable()


def answer_headers(upstream_headers: CIMultiDictProxy, extra_headers: dict[str, str] | None) -> CIMultiDict:
    """The upstream answer's headers as the client gets them: hop-by-hop dropped, the gateway's extras added."""
    headers_out = downstream_response_headers(upstream_headers)
    headers_out.setdefault("Server", errors.SERVER)  # the upstream's own passes unchanged
    if extra_headers:
        headers_out.update(extra_headers)
    return headers_out


def whole_body_expected(method: str, status: int, upstream_headers: CIMultiDictProxy) -> bool:
    """A small answer with a declared length: read whole before answering, so a failure can still be a 502."""
    length = upstream_headers.get("Content-Length")
    return length is not None and length.isdigit() and int(length) <= SMALL_BODY \
        and method != "HEAD" and status not in (204, 304)


CUT_SHORT = (aiohttp.ClientError, UpstreamGone, OSError, asyncio.TimeoutError, BodyAborted)


async def _relay_answer(request: web.BaseRequest, request_id: str, status: int, reason: str | None,
                        upstream_headers: CIMultiDictProxy, content: StreamReader,
                        extra_headers: dict[str, str] | None, silence: float | None,
                        expires_at: float | None) -> web.StreamResponse:
    """The upstream's answer to the client, for both upstream clients.

    Small bodies are read whole, so a failure can still become a clean 502/504, and leave with the head
    in one write; the rest stream with backpressure.  `silence` bounds each wait for upstream bytes
    where the client has no read timer of its own.  A failure once the answer has started cuts the
    client connection without a terminating chunk, so a truncated body never looks complete.  A
    stream still running when its token expires (`expires_at`) is ended then (token_expiry).
    """
    headers_out = answer_headers(upstream_headers, extra_headers)
    if whole_body_expected(request.method, status, upstream_headers):
        if content.is_eof():  # the usual case: the whole body came with the head, nothing to wait for
            body = await content.read()
        else:
            async with _deadline(silence):
                body = await content.read()
        return web.Response(status=status, reason=reason, headers=headers_out, body=body)
    response = web.StreamResponse(status=status, reason=reason, headers=headers_out)
    await response.prepare(request)
    at_event_boundary = True  # SSE: the last chunk ended an event (or none was sent)
    timer = until_expiry(expires_at)
    try:
        async with timer:
            while True:
                async with _deadline(silence):
                    chunk = await content.readany()
                if not chunk:
                    break
                await response.write(chunk)  # waits for the client to drain: backpressure to the upstream
                at_event_boundary = chunk.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))
            await response.write_eof()
    except CUT_SHORT as exc:
        if expired(timer):
            await _end_at_expiry(request, request_id, response, at_event_boundary)
        else:
            log.info("request %s: response cut short after it started (%s)", request_id, type(exc).__name__)
        request.protocol.force_close()  # no terminating chunk: the client sees a truncated body
    return response


async def _end_at_expiry(request: web.BaseRequest, request_id: str, response: web.StreamResponse,
                         at_event_boundary: bool) -> None:
    """An SSE stream gets a final `event: token_expired` (when between events) and its end; the caller
    closes the connection."""
    response[ENDED_BY] = STREAM_EXPIRED
    log.info("request %s: stream ended, its token expired", request_id)
    if at_event_boundary and response.content_type == "text/event-stream":
        with contextlib.suppress(*CUT_SHORT):
            async with asyncio.timeout(1.0):  # a client that stopped reading gets no more
                await response.write(SSE_TOKEN_EXPIRED)
                await response.write_eof()


def _deadline(seconds: float | None):
    return asyncio.timeout(seconds) if seconds else contextlib.nullcontext()
