"""The one upstream double: a real aiohttp server that records and echoes what reached it, with behaviours by path.

Every request is recorded (method, raw target, headers in order with
repeats, body length, SHA-256 and the body itself up to `KEPT_BODY_BYTES`,
client port) so a test can prove byte for byte what the gateway forwarded,
or that nothing was forwarded at all (`hits`).  It runs on aiohttp's
low-level server, without a router, so every target arrives exactly as sent.

Any path answers with the record as JSON (`echo`), except these behaviours,
each a path a test chooses:

- `/stream-echo` streams the request body back as it arrives;
- `/download?size=N&framing=fixed|chunked&seed=S&id=I` sends N pseudo-random bytes;
- `/cookies` three Set-Cookie headers, `/hop` hop-by-hop response headers;
- `/status/<code>` answers that status (with a body where one is allowed);
- `/sse` sends an event each time the test puts one on `controls.sse_next`;
- `/ws`, `/ws-strict` a WebSocket echo; `/ws-refuse` refuses the upgrade with 403;
- `/hold` answers only once the test sets `controls.release`, counting requests held at once;
- `/stall` never answers, `/reset` resets the connection, `/truncated` dies mid-body;
- `/early-hints` sends a 103 before its answer; `/no-server-header` answers without a Server header;
- `/once-per-connection` answers the first request on a connection and closes it, unanswered, on the next.

Streams are driven by the test through asyncio events, never by sleeps.
Serves over TCP or a Unix socket.  The same class is the trap server for
URLs a token tries to make the gateway fetch: its `hits` must stay zero.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import socket
import ssl
import struct
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.support.served import Served

BLOCK = 1 << 20
KEPT_BODY_BYTES = 1 << 20  # bodies up to this size are kept (and echoed); larger ones only counted and hashed


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
    """One request as it reached the upstream."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    length: int
    sha256: str
    peer_port: int
    body: bytes | None = None  # None when longer than KEPT_BODY_BYTES
    tls: bool = False  # arrived over TLS

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    def as_json(self) -> dict:
        body = None if self.body is None else base64.b64encode(self.body).decode()
        return {"method": self.method, "target": self.target, "headers": self.headers,
                "length": self.length, "sha256": self.sha256, "body": body}


@dataclass
class Controls:
    """What the test steers: SSE pacing, held requests, WebSocket traffic."""

    sse_next: asyncio.Queue = field(default_factory=asyncio.Queue)  # put an event text; None ends
    sse_sent: list[str] = field(default_factory=list)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # a /hold request arrived
    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0  # /hold requests waiting now
    most_held: int = 0  # the most /hold requests that ever waited at once
    ws_received: list = field(default_factory=list)  # (type, data) and ("close", code, reason)
    ws_closed: asyncio.Event = field(default_factory=asyncio.Event)
    download_sha256: dict[str, str] = field(default_factory=dict)  # by ?id=


def _headers(request: web.BaseRequest) -> list[tuple[str, str]]:
    """As received: original spelling, order and repeats."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]


def _over_tls(request: web.BaseRequest) -> bool:
    return request.transport is not None and request.transport.get_extra_info("sslcontext") is not None


class EchoUpstream(Served):
    def __init__(self):
        self.seen: list[Seen] = []
        self.controls = Controls()
        self.closing = asyncio.Event()  # set by stop(): handlers that never answer end then
        self.runner: web.ServerRunner | None = None
        self.url = ""
        self.port = 0  # over TCP
        self._answered_connections: set = set()  # transports /once-per-connection has answered on
        self._behaviours = {
            "/stream-echo": self.stream_echo, "/download": self.download, "/cookies": self.cookies,
            "/hop": self.hop, "/sse": self.sse, "/trickle": self.trickle, "/ws": self.websocket,
            "/ws-strict": self.websocket,
            "/ws-refuse": self.ws_refuse, "/stall": self.stall, "/reset": self.reset,
            "/truncated": self.truncated, "/hold": self.hold, "/early-hints": self.early_hints,
            "/once-per-connection": self.once_per_connection, "/no-server-header": self.no_server_header,
        }

    @property
    def last(self) -> Seen:
        return self.seen[-1]

    @property
    def hits(self) -> int:
        return len(self.seen)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        if path.startswith("/status/"):
            return await self.status(request, int(path[len("/status/"):]))
        if path.startswith("/trickle/"):  # the same stream under any deeper path (a path the test chooses)
            return await self.trickle(request)
        return await self._behaviours.get(path, self.echo)(request)

    def _runner(self) -> web.ServerRunner:
        return web.ServerRunner(web.Server(self._dispatch, access_log=None), shutdown_timeout=2.0)

    async def start(self, tls: ssl.SSLContext | None = None) -> "EchoUpstream":
        """On a free loopback port; over TLS (an https:// URL) when given a server SSLContext."""
        self.runner = self._runner()
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        self.port = self.runner.addresses[0][1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        return self

    async def start_unix(self, path: str) -> "EchoUpstream":
        self.runner = self._runner()
        await self.runner.setup()
        await web.UnixSite(self.runner, path).start()
        self.url = f"unix:{path}"
        return self

    async def stop(self) -> None:
        self.closing.set()
        self.controls.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _record(self, request: web.BaseRequest) -> Seen:
        digest = hashlib.sha256()
        kept = bytearray()
        length = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
            if length <= KEPT_BODY_BYTES:
                kept += chunk
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen = Seen(request.method, request.raw_path, _headers(request), length, digest.hexdigest(),
                    peer[1] if isinstance(peer, tuple) else 0, bytes(kept) if length <= KEPT_BODY_BYTES else None,
                    _over_tls(request))
        self.seen.append(seen)
        return seen

    async def echo(self, request: web.BaseRequest) -> web.Response:
        seen = await self._record(request)
        return web.Response(body=json.dumps(seen.as_json()).encode(), content_type="application/json")

    async def stream_echo(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        async for chunk in request.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def download(self, request: web.BaseRequest) -> web.StreamResponse:
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

    async def cookies(self, request: web.BaseRequest) -> web.Response:
        response = web.Response(text="cookies")
        for value in ("a=1; Path=/", "b=2; HttpOnly", "c=3, with comma; Secure"):
            response.headers.add("Set-Cookie", value)
        return response

    async def hop(self, request: web.BaseRequest) -> web.Response:
        await self._record(request)
        headers = [("Connection", "keep-alive, X-Upstream-Private"), ("X-Upstream-Private", "secret"),
                   ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic"), ("Trailer", "X-Sum"),
                   ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"), ("X-End-To-End", "kept")]
        response = web.Response(text="hop")
        for name, value in headers:
            response.headers.add(name, value)
        return response

    async def status(self, request: web.BaseRequest, code: int) -> web.Response:
        await self._record(request)
        headers = {"ETag": '"v1"', "X-Status": str(code)}
        if code in (204, 304):
            return web.Response(status=code, headers=headers)
        return web.Response(status=code, body=b"x" * 1000, headers=headers)  # HEAD drops the body

    async def sse(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        while (text := await self.controls.sse_next.get()) is not None:
            await response.write(f"data: {text}\n\n".encode())
            self.controls.sse_sent.append(text)
        await response.write_eof()
        return response

    async def trickle(self, request: web.BaseRequest) -> web.StreamResponse:
        """A plain chunked stream paced like /sse: one chunk per text the test puts."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        while (text := await self.controls.sse_next.get()) is not None:
            await response.write(text.encode())
            self.controls.sse_sent.append(text)
        await response.write_eof()
        return response

    async def websocket(self, request: web.BaseRequest) -> web.WebSocketResponse:
        self.seen.append(Seen(request.method, request.raw_path, _headers(request), 0, "", 0, tls=_over_tls(request)))
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

    async def ws_refuse(self, request: web.BaseRequest) -> web.Response:
        return web.Response(status=403, text="no sockets for you")

    async def stall(self, request: web.BaseRequest) -> web.Response:
        await self.closing.wait()  # never answers; the gateway's read timeout must fire
        raise web.HTTPServiceUnavailable()

    async def reset(self, request: web.BaseRequest) -> web.Response:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request.transport.abort()  # RST, no answer
        await self.closing.wait()
        raise web.HTTPServiceUnavailable()

    async def truncated(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1 << 20
        await response.prepare(request)
        await response.write(b"x" * 300_000)
        await response.write(b"")
        request.transport.close()  # dies mid-body
        return response

    async def hold(self, request: web.BaseRequest) -> web.Response:
        seen = await self._record(request)
        controls = self.controls
        controls.holding += 1
        controls.most_held = max(controls.most_held, controls.holding)
        controls.held.set()
        try:
            await controls.release.wait()
        finally:
            controls.holding -= 1
        return web.Response(text=f"held {seen.length}")

    async def early_hints(self, request: web.BaseRequest) -> web.Response:
        """An informational 103 first, written as aiohttp writes its own 100 Continue."""
        await request.writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        return await self.echo(request)

    async def once_per_connection(self, request: web.BaseRequest) -> web.Response:
        """A kept-alive connection the upstream drops as it is reused: the next request gets no answer."""
        transport = request.transport
        if transport in self._answered_connections:
            await self._record(request)
            transport.close()
            await self.closing.wait()
            raise web.HTTPServiceUnavailable()
        self._answered_connections.add(transport)
        return await self.echo(request)

    async def no_server_header(self, request: web.BaseRequest) -> web.Response:
        """aiohttp adds a Server header to every answer it writes, so this one is written as bytes; then it closes."""
        await self._record(request)
        request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        request.transport.close()
        await self.closing.wait()
        raise web.HTTPServiceUnavailable()
