"""A purpose-built upstream for proxy tests: a real aiohttp server that echoes, streams, stalls and resets.

Every request is recorded (method, raw target, headers in order with
repeats, body length and SHA-256, framing, client port) so a test can prove
byte for byte what the gateway forwarded.  Streams are driven by the test
through asyncio events, never by sleeps: the SSE endpoint sends its next
event only when the test says so, the hold endpoint answers only when
released.  Serves over TCP or a Unix socket.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

BLOCK = 1 << 20


def pattern(size: int, seed: int = 0):
    """Deterministic pseudo-random bytes in 1 MiB blocks, each block numbered so none repeats."""
    base = random.Random(seed).randbytes(BLOCK)
    sent = 0
    index = 0
    while sent < size:
        block = (struct.pack(">Q", index) + base[8:])[: size - sent]
        yield block
        sent += len(block)
        index += 1


def sha256_of(chunks) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    length: int
    sha256: str
    peer_port: int

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


@dataclass
class Controls:
    """What the test steers: SSE pacing, held requests, WebSocket traffic."""

    sse_next: asyncio.Queue = field(default_factory=asyncio.Queue)  # put an event text; None ends
    sse_sent: list[str] = field(default_factory=list)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # a /hold request arrived
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ws_received: list = field(default_factory=list)  # (type, data) and ("close", code, reason)
    ws_closed: asyncio.Event = field(default_factory=asyncio.Event)
    download_sha256: dict[str, str] = field(default_factory=dict)  # by ?id=


def _headers(request: web.BaseRequest) -> list[tuple[str, str]]:
    """As received: original spelling, order and repeats."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]


class Upstream:
    def __init__(self):
        self.seen: list[Seen] = []
        self.controls = Controls()
        self.closing = asyncio.Event()  # set by stop(): handlers that never answer end then
        self.runner: web.AppRunner | None = None
        self.url = ""

    @property
    def last(self) -> Seen:
        return self.seen[-1]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        add = app.router.add_route
        add("*", "/echo/{tail:.*}", self.echo)
        add("*", "/echo", self.echo)
        add("POST", "/stream-echo", self.stream_echo)
        app.router.add_get("/download", self.download)
        app.router.add_get("/cookies", self.cookies)
        app.router.add_get("/hop", self.hop)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/sse", self.sse)
        app.router.add_get("/trickle", self.trickle)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/ws-strict", self.websocket)
        app.router.add_get("/ws-refuse", self.ws_refuse)
        add("*", "/stall", self.stall)
        add("*", "/reset", self.reset)
        app.router.add_get("/truncated", self.truncated)
        add("*", "/hold", self.hold)
        return app

    async def start_tcp(self) -> "Upstream":
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def start_unix(self, path: str) -> "Upstream":
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        await web.UnixSite(self.runner, path).start()
        self.url = f"unix:{path}"
        return self

    async def stop(self) -> None:
        self.closing.set()
        self.controls.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _record(self, request: web.Request) -> Seen:
        digest = hashlib.sha256()
        length = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen = Seen(request.method, request.raw_path, _headers(request),
                    length, digest.hexdigest(), peer[1] if isinstance(peer, tuple) else 0)
        self.seen.append(seen)
        return seen

    async def echo(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        body = {"method": seen.method, "target": seen.target, "headers": seen.headers,
                "length": seen.length, "sha256": seen.sha256}
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    async def stream_echo(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        async for chunk in request.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def download(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        fixed = request.query.get("framing", "fixed") == "fixed"
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if fixed:
            response.content_length = size
        await response.prepare(request)
        digest = hashlib.sha256()
        for block in pattern(size, int(request.query.get("seed", "0"))):
            digest.update(block)
            await response.write(block)
        await response.write_eof()
        self.controls.download_sha256[request.query.get("id", "")] = digest.hexdigest()
        return response

    async def cookies(self, request: web.Request) -> web.Response:
        response = web.Response(text="cookies")
        for value in ("a=1; Path=/", "b=2; HttpOnly", "c=3, with comma; Secure"):
            response.headers.add("Set-Cookie", value)
        return response

    async def hop(self, request: web.Request) -> web.Response:
        await self._record(request)
        headers = [("Connection", "keep-alive, X-Upstream-Private"), ("X-Upstream-Private", "secret"),
                   ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic"), ("Trailer", "X-Sum"),
                   ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"), ("X-End-To-End", "kept")]
        response = web.Response(text="hop")
        for name, value in headers:
            response.headers.add(name, value)
        return response

    async def status(self, request: web.Request) -> web.Response:
        await self._record(request)
        code = int(request.match_info["code"])
        headers = {"ETag": '"v1"', "X-Status": str(code)}
        if code in (204, 304):
            return web.Response(status=code, headers=headers)
        return web.Response(status=code, body=b"x" * 1000, headers=headers)  # HEAD drops the body

    async def sse(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        while (text := await self.controls.sse_next.get()) is not None:
            await response.write(f"data: {text}\n\n".encode())
            self.controls.sse_sent.append(text)
        await response.write_eof()
        return response

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        """A plain chunked stream paced like /sse: one chunk per text the test puts."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        while (text := await self.controls.sse_next.get()) is not None:
            await response.write(text.encode())
            self.controls.sse_sent.append(text)
        await response.write_eof()
        return response

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        self.seen.append(Seen(request.method, request.raw_path, _headers(request), 0, "", 0))
        ws = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"))
        await ws.prepare(request)
        received = self.controls.ws_received
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                received.append(("text", message.data))
                if message.data == "vanish":
                    request.transport.abort()  # no close frame: the connection just dies
                    break
                if message.data.startswith("close:"):
                    _, code, reason = message.data.split(":", 2)
                    await ws.close(code=int(code), message=reason.encode())
                    break
                await ws.send_str("echo:" + message.data)
            elif message.type is WSMsgType.BINARY:
                received.append(("binary", message.data))
                await ws.send_bytes(message.data[::-1])
        received.append(("close", ws.close_code, ""))
        self.controls.ws_closed.set()
        return ws

    async def ws_refuse(self, request: web.Request) -> web.Response:
        return web.Response(status=403, text="no sockets for you")

    async def stall(self, request: web.Request) -> web.Response:
        await self.closing.wait()  # never answers; the gateway's read timeout must fire
        raise web.HTTPServiceUnavailable()

    async def reset(self, request: web.Request) -> web.Response:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request.transport.abort()  # RST, no answer
        await self.closing.wait()
        raise web.HTTPServiceUnavailable()

    async def truncated(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1 << 20
        await response.prepare(request)
        await response.write(b"x" * 300_000)
        await response.write(b"")
        request.transport.close()  # dies mid-body
        return response

    async def hold(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        self.controls.held.set()
        await self.controls.release.wait()
        return web.Response(text=f"held {seen.length}")
