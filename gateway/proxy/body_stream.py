"""Request body pump: the client's body streamed upstream under the gateway's limits, never held whole.

A chunk is read from the client only after the upstream connection took the
previous one, so backpressure reaches the client's socket and a 1 GiB upload
costs a few socket buffers of memory.  The decisions that need the body are
taken here, as bytes arrive: `Expect: 100-continue` is answered only now that
the request is authorized (a refused upload is never sent at all), the total
is held to `max_body_bytes` (413, up front when Content-Length declares it),
and a client that sends nothing for `body_timeout` seconds is dropped (408).
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError

from gateway import errors
from gateway.proxy.token_expiry import STREAM_EXPIRED, seconds_left

# What aiohttp's own expect handler writes; web.Server (no router) never sends it by itself.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BodyAborted(Exception):
    """Raised into the upstream request when the client's body is refused; `RequestBody.failure` says why."""


def wants_continue(request: web.BaseRequest) -> bool:
    """`Expect: 100-continue` on HTTP/1.1 (RFC 9110 §10.1.1: HTTP/1.0 expectations are ignored)."""
    expect = request.headers.get("Expect")
    if expect is None or request.version < HttpVersion11:
        return False
    if expect.strip().lower() != "100-continue":
        raise errors.expectation_failed(expect)
    return True


def must_close_after_refusal(request: web.BaseRequest, status: int, code: str = "") -> bool:
    """Whether a refused request's connection must close instead of lingering over its unread body.

    A client waiting for 100 Continue will never send the body (a lingering read would hang and
    its next request would be read as body); a client dropped for slowness, or whose token expired
    while its body was arriving, is not waited for.
    """
    if not request.body_exists or request.content.is_eof():
        return False
    if status == 408 or code == STREAM_EXPIRED:
        return True
    try:
        return wants_continue(request) and request.writer.output_size == 0
    except errors.Rejection:
        return True


async def answer_and_close(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Send a refusal now and close behind it, skipping aiohttp's lingering read of the unread body."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the transport flushes the answer, then closes


class RequestBody:
    def __init__(self, request: web.BaseRequest, max_bytes: int, idle_timeout: float,
                 expires_at: float | None = None):
        self.request = request
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.expires_at = expires_at  # the token's end: an upload still arriving then is refused
        self.failure: errors.Rejection | None = None
        self.expect_continue = wants_continue(request)
        length = request.content_length
        if length is not None and length > max_bytes:
            raise errors.payload_too_large(max_bytes)

    def source(self) -> AsyncIterator[bytes] | None:
        return self._chunks() if self.request.body_exists else None

    def _abort(self, rejection: errors.Rejection) -> BodyAborted:
        self.failure = rejection
        return BodyAborted(rejection.code)

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self.expect_continue:
            await self.request.writer.write(CONTINUE)
        content = self.request.content
        received = 0
        while True:
            wait = self.idle_timeout
            if self.expires_at is not None:
                wait = min(wait, seconds_left(self.expires_at))
            try:
                async with asyncio.timeout(wait):
                    chunk = await content.readany()
            except TimeoutError:
                if wait < self.idle_timeout:
                    raise self._abort(errors.token_expired_during_stream()) from None
                raise self._abort(errors.request_timeout(self.idle_timeout)) from None
            except (ConnectionError, HttpProcessingError):
                raise self._abort(errors.bad_request(
                    "incomplete_body", "the client closed the connection or sent a malformed body")) from None
            if not chunk:
                return
            received += len(chunk)
            if received > self.max_bytes:
                raise self._abort(errors.payload_too_large(self.max_bytes))
            yield chunk
