"""What a token authorized ends when the token does: WebSockets, streamed answers and slow uploads.

A token is checked when a request starts; anything that outlives it (its `exp`
plus the provider's leeway) is ended at that moment, so a stolen or revoked
credential cannot be stretched by a connection held open.  WebSockets close
with 4001, an SSE stream gets a final `event: token_expired`, any other
streamed answer is cut without its terminating chunk, and an upload still
arriving is refused with 401.  The access log says `token_expired_during_stream`.
A route may opt out with `streams_outlive_token: true`.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web

STREAM_EXPIRED = "token_expired_during_stream"
ENDED_BY = web.ResponseKey("ended_by", str)  # on a response the gateway ended early: why (the access log's reason)
SSE_TOKEN_EXPIRED = (b"event: token_expired\n"
                     b'data: {"code": "token_expired_during_stream", "description": "the token that opened '
                     b'this stream expired; reconnect with a fresh token"}\n\n')


def seconds_left(expires_at: float) -> float:
    """Seconds until `expires_at` (epoch seconds, leeway included); 0 once it has passed."""
    return max(0.0, expires_at - time.time())


def until_expiry(expires_at: float | None):
    """A timeout that fires when the token expires (an asyncio.Timeout, `.expired()` says whether it did);
    a no-op without a token."""
    if expires_at is None:
        return contextlib.nullcontext()
    return asyncio.timeout(seconds_left(expires_at))


def expired(timer) -> bool:
    return isinstance(timer, asyncio.Timeout) and timer.expired()
