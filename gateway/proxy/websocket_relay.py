"""WebSocket relay: an authorized upgrade becomes two WebSocket connections joined message by message.

The upstream is dialled first, so an unreachable upstream is still a plain
502/504 and a refused upgrade keeps the upstream's status; the client is
never upgraded into a dead end.  Text and binary messages are relayed in
order, and a close frame is passed on with its code and reason.  Each hop
negotiates its own extensions and answers its own pings.

A token authorizes a connection only while it is valid: when it expires
(its `exp` plus the provider's leeway) both sides are closed with 4001
"token expired", so a socket cannot outlive its credential; the client
reconnects with a fresh token.  A stopping gateway closes relays with 1001.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from gateway import errors
from gateway.proxy.token_expiry import ENDED_BY, STREAM_EXPIRED, seconds_left
from gateway.proxy.upstream_client import tls_failure

log = logging.getLogger("gateway.websocket")

TOKEN_EXPIRED = 4001  # application range (RFC 6455 §7.4.2): a fresh token is needed
_NO_CODE = (None, 1005, 1006)  # "no status" / "abnormal": never sent on the wire


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    if request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
        return False
    tokens = {part.strip().lower() for value in request.headers.getall("Connection", ()) for part in value.split(",")}
    return "upgrade" in tokens


@dataclass(frozen=True)
class _End:
    """Why one direction stopped: the close to pass on to the other side."""

    code: int
    reason: str


class _Pair:
    def __init__(self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse):
        self.client = client
        self.upstream = upstream
        self.stop: asyncio.Future[_End] = asyncio.get_running_loop().create_future()

    async def run(self, expires_at: float | None) -> None:
        to_upstream = asyncio.create_task(_pump(self.client, self.upstream, WSCloseCode.GOING_AWAY))
        to_client = asyncio.create_task(_pump(self.upstream, self.client, WSCloseCode.BAD_GATEWAY))
        waiters: set[asyncio.Future] = {to_upstream, to_client, self.stop}
        if expires_at is not None:
            waiters.add(asyncio.ensure_future(_expiry(expires_at)))
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finished = next(iter(done))
            if finished.exception() is not None:
                log.error("websocket relay failed", exc_info=finished.exception())
                end = _End(WSCloseCode.INTERNAL_ERROR, "")
            else:
                end = finished.result()
            message = end.reason.encode()
            if finished is to_upstream or finished is to_client:
                # Pass the close on to the other side first (its pending receive returns at
                # once), then answer the side that closed; aiohttp sends no second close frame.
                other, closer = (self.upstream, self.client) if finished is to_upstream else (self.client, self.upstream)
                await other.close(code=end.code, message=message)
                await closer.close(code=end.code, message=message)
            else:  # the token expired or the gateway is stopping: both sides at once
                if end.code == TOKEN_EXPIRED:
                    self.client[ENDED_BY] = STREAM_EXPIRED
                await asyncio.gather(self.client.close(code=end.code, message=message),
                                     self.upstream.close(code=end.code, message=message))
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)


async def _pump(source, sink, lost_code: int) -> _End:
    """Relay until `source` closes; its close code (or `lost_code` if it vanished) goes to `sink`."""
    while True:
        message = await source.receive()
        try:
            if message.type is WSMsgType.TEXT:
                await sink.send_str(message.data)
                continue
            if message.type is WSMsgType.BINARY:
                await sink.send_bytes(message.data)
                continue
        except ConnectionError:
            return _End(WSCloseCode.GOING_AWAY, "peer gone")
        if message.type is WSMsgType.CLOSE:
            code = WSCloseCode.OK if message.data in _NO_CODE else message.data
            return _End(code, message.extra or "")
        if message.type is WSMsgType.ERROR and isinstance(message.data, aiohttp.WebSocketError):
            return _End(message.data.code, "")  # e.g. 1009: a message over the size limit
        return _End(lost_code, "")  # CLOSED/CLOSING/ERROR: the connection went away


async def _expiry(expires_at: float) -> _End:
    await asyncio.sleep(seconds_left(expires_at))
    return _End(TOKEN_EXPIRED, "token expired")


class WebSocketRelay:
    def __init__(self, session: aiohttp.ClientSession, max_message_bytes: int, server_name: str | None = None,
                 close_timeout: float = 5.0):
        self.session = session
        self.server_name = server_name  # an https upstream's certificate name, if not the URL's host
        self.max_message_bytes = max_message_bytes
        self.close_timeout = close_timeout
        self.open: set[_Pair] = set()

    async def relay(self, request: web.BaseRequest, url: URL, headers: CIMultiDict,
                    expires_at: float | None) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request):
            raise errors.bad_request("invalid_websocket_handshake",
                                     "the WebSocket upgrade request is malformed (RFC 6455 §4.2.1)")
        offered = [p.strip() for value in request.headers.getall("Sec-WebSocket-Protocol", ())
                   for p in value.split(",") if p.strip()]
        try:
            upstream = await self.session.ws_connect(
                url, headers=headers, protocols=offered, autoclose=False, autoping=True,
                max_msg_size=self.max_message_bytes, server_hostname=self.server_name,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.close_timeout))
        except aiohttp.WSServerHandshakeError as exc:
            # The upstream's decision, passed on with its status (its body is not kept by aiohttp).
            status = exc.status if 400 <= exc.status < 600 else 502
            return web.json_response({"code": "websocket_refused_by_upstream",
                                      "description": f"the upstream answered the upgrade with HTTP {exc.status}"},
                                     status=status, headers={"Server": errors.SERVER})
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            raise errors.upstream_timeout() from None
        except aiohttp.ClientSSLError as exc:
            raise tls_failure(exc) from None
        except aiohttp.ClientError:
            raise errors.upstream_unavailable() from None
        client = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else (),
                                       autoclose=False, autoping=True, timeout=self.close_timeout,
                                       max_msg_size=self.max_message_bytes)
        client.headers["Server"] = errors.SERVER
        try:
            await client.prepare(request)
        except BaseException:
            await upstream.close(code=WSCloseCode.GOING_AWAY)
            raise
        pair = _Pair(client, upstream)
        self.open.add(pair)
        try:
            await pair.run(expires_at)
        finally:
            self.open.discard(pair)
            if not upstream.closed:
                await upstream.close(code=WSCloseCode.GOING_AWAY)
        return client

    def close_all(self, code: int = WSCloseCode.GOING_AWAY, reason: str = "gateway shutting down") -> None:
        """Ask every open relay to close both sides (the gateway is stopping)."""
        for pair in self.open:
            if not pair.stop.done():
                pair.stop.set_result(_End(code, reason))
