"""The floor: what relaying a request costs in CPython on this stack before any auth is done.

A keep-alive HTTP/1.1 relay for bodiless requests on uvloop, aiohttp's C
(llhttp) request parser on the client side and the gateway's own lean
upstream pool on the other, one write each way, no checks of any kind.  It
is not a proxy anyone should run (no timeouts, no limits, no error answers,
no header hygiene): `python -m bench.ab ... --floor` runs it beside the
gateway copies so the gateway's CPU per request can be read against the
least a Python proxy pays here.

    python bench/experiments/floor_proxy.py LISTEN_PORT UPSTREAM_PORT
"""
from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpRequestParser

from gateway.proxy.upstream_client import UpstreamPool

SKIPPED = frozenset({"connection", "keep-alive", "authorization", "host"})


class FloorConnection(BaseProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, pool: UpstreamPool, upstream: str):
        super().__init__(loop)
        self.pool, self.upstream = pool, upstream
        self.parser = HttpRequestParser(self, loop, 2 ** 16, max_line_size=8190, max_field_size=8190)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.task = self._loop.create_task(self.serve())

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        self.task.cancel()

    def data_received(self, data: bytes) -> None:
        messages, _, _ = self.parser.feed_data(data)
        for message, _ in messages:
            self.queue.put_nowait(message)

    async def serve(self) -> None:
        while True:
            message = await self.queue.get()
            lines = [f"{message.method} {message.path} HTTP/1.1", f"Host: {self.upstream}"]
            lines += [f"{k}: {v}" for k, v in message.headers.items() if k.lower() not in SKIPPED]
            connection, answer, payload = await self.pool.request(message.method, ("\r\n".join(lines) + "\r\n\r\n").encode())
            body = await payload.read()
            self.pool.release(connection, answer, payload)
            out = [f"HTTP/1.1 {answer.code} {answer.reason}"]
            out += [f"{k}: {v}" for k, v in answer.headers.items() if k.lower() not in SKIPPED]
            self.transport.write(("\r\n".join(out) + "\r\n\r\n").encode() + body)


async def main(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    pool = UpstreamPool("127.0.0.1", upstream_port, None, 32, 5.0, 30.0)
    upstream = f"127.0.0.1:{upstream_port}"
    await loop.create_server(lambda: FloorConnection(loop, pool, upstream), "127.0.0.1", port, backlog=1024)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
