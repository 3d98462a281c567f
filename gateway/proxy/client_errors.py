"""Answers for requests the HTTP parser refuses: precise JSON 4xx, and log lines that never quote the request.

aiohttp answers an oversized request line or header with a plain-text 400
whose body and ERROR log entry quote up to 100 bytes of the offending line;
for a long `Authorization: Bearer …` header or a `?access_token=` query that
is a token in the log.  This handler keeps aiohttp's parsing and limits and
changes only the answer: 414 for the request line, 431 for a header field or
too many headers, 400 for anything else malformed, in the gateway's JSON
shape, logged as one line naming the problem class and the peer.
"""
from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway import errors
from gateway.config.model import Limits

log = logging.getLogger("gateway.clients")


def classify(exc: BaseException | None, status: int, limits: Limits) -> errors.Rejection:
    """The gateway's answer for a request aiohttp could not parse (or a handler that failed)."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == limits.max_line_size != limits.max_field_size:
            return errors.request_line_too_long(limits.max_line_size)
        if limit == limits.max_field_size != limits.max_line_size:
            return errors.headers_too_large(f"a header field is longer than {limits.max_field_size} bytes")
        return errors.bad_request("line_too_long", f"the request line or a header is longer than {limit} bytes")
    if isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower():
        return errors.headers_too_large(f"more than {limits.max_headers} header fields")
    if status < 500:
        return errors.bad_request("malformed_request", "the request is not valid HTTP/1.1")
    if status == 504:
        return errors.upstream_timeout()
    return errors.Rejection(500, "internal_error", "the gateway failed to handle this request; see its log")


class _JsonErrorRequestHandler(RequestHandler):
    __slots__ = ("limits",)

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection instead")
        rejection = classify(exc, status, self.limits)
        if rejection.status >= 500:
            log.error("unhandled error for a request from %s", request.remote, exc_info=exc)
        else:
            log.info("refused unparseable request from %s: %s (%s)", request.remote, rejection.code,
                     type(exc).__name__ if exc else "-")
        response = rejection.response("")
        response.force_close()
        return response


class GatewayHttpServer(web.Server):
    """aiohttp's low-level server with the JSON error handler above; everything else is aiohttp's."""

    def __init__(self, handler, *, limits: Limits, **kwargs):
        super().__init__(handler, max_line_size=limits.max_line_size, max_field_size=limits.max_field_size,
                         max_headers=limits.max_headers, **kwargs)
        self.limits = limits

    def __call__(self) -> RequestHandler:
        # web.Server.__call__ builds its RequestHandler from these same two attributes (aiohttp 3.x).
        protocol = _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)
        protocol.limits = self.limits
        return protocol
