"""Raw-socket HTTP/1.1 for attack tests: the bytes we write are the bytes the gateway reads.

Client libraries normalise exactly what these tests need to send badly
(paths, header case and duplicates, framing), so requests are written to a
plain socket.  Answers are parsed by the standard library's `http.client`,
not by hand.  Blocking calls run in a worker thread (`send`) so the
in-process gateway keeps serving on the test's event loop.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import socket
from dataclasses import dataclass, field

HOST = "gw.test"


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    closed: bool = False  # the server closed the connection after answering
    raw_status_line: str = field(default="", repr=False)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self):
        return json.loads(self.body)

    @property
    def is_json(self) -> bool:
        content_type = (self.header("Content-Type") or "").split(";")[0].strip()
        if content_type != "application/json":
            return False
        try:
            self.json()
        except ValueError:
            return False
        return True


def build(method: str, target: str | bytes, headers: list[tuple[str, str]] | None = None,
          body: bytes = b"", host: str | None = HOST, version: str = "HTTP/1.1") -> bytes:
    """One request, byte for byte; `headers` may repeat names and use any spelling."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [method.encode() + b" " + target + b" " + version.encode()]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    for name, value in headers or ():
        lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
    if body and not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers or ()):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Stream:
    """One buffered reader per connection, shared by successive `HTTPResponse`s.

    `HTTPResponse` reads through `sock.makefile()` and may buffer past its own
    answer; with pipelining the next answer would be lost in a discarded
    buffer, so every response on a connection reads from the same one.
    """

    def __init__(self, sock: socket.socket):
        self._file = sock.makefile("rb")

    def makefile(self, *args, **kwargs):
        return self

    def close(self) -> None:  # HTTPResponse closes its file when done; the connection's stays open
        pass

    def release(self) -> None:
        self._file.close()

    def __getattr__(self, name):
        return getattr(self._file, name)


def _read_answer(stream: _Stream, method: str) -> Answer:
    response = http.client.HTTPResponse(stream, method=method)
    response.begin()
    body = response.read()
    return Answer(response.status, list(response.getheaders()), body,
                  closed=response.will_close, raw_status_line=f"HTTP/{response.version / 10:.1f} {response.status}")


def exchange(port: int, raw: bytes, method: str = "GET", timeout: float = 10.0) -> Answer:
    """Send raw bytes on a fresh connection and read one answer (blocking)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        stream = _Stream(sock)
        try:
            return _read_answer(stream, method)
        finally:
            stream.release()


def exchange_many(port: int, raws: list[bytes], method: str = "GET", timeout: float = 10.0) -> list[Answer]:
    """Pipeline several requests on one connection; read answers until the server stops answering."""
    answers: list[Answer] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(raws))
        stream = _Stream(sock)
        for _ in raws:
            try:
                answer = _read_answer(stream, method)
            except (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine):
                break
            answers.append(answer)
            if answer.closed:
                break
        stream.release()
    return answers


class Connection:
    """A keep-alive connection that reconnects when the server closes it (for the fuzzer)."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.stream: _Stream | None = None

    def request(self, raw: bytes, method: str = "GET") -> Answer:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.stream = _Stream(self.sock)
        try:
            self.sock.sendall(raw)
            answer = _read_answer(self.stream, method)
        except BaseException:
            self.close()
            raise
        if answer.closed:
            self.close()
        return answer

    def close(self) -> None:
        if self.sock is not None:
            self.stream.release()
            self.sock.close()
            self.sock = self.stream = None


async def send(port: int, raw: bytes, method: str = "GET") -> Answer:
    return await asyncio.to_thread(exchange, port, raw, method)
