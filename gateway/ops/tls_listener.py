"""The https listener: TLS termination, certificates that rotate without a restart, plain http refused.

Connections are accepted here rather than by `loop.create_server(ssl=...)` so
that two things are possible with public asyncio calls only:
- each connection's first byte is peeked (MSG_PEEK, nothing consumed): a TLS
  ClientHello (0x16) goes on to the handshake through
  `loop.connect_accepted_socket(ssl=...)`, anything else gets a plaintext
  400 naming the fix and is closed, never left hanging;
- every handshake takes the context that is current *at accept*, so rotation
  is one assignment: a new pair serves the next handshake, connections
  already open keep the context they were made with until they close.
  (The alternative, an SNI callback swapping `ssl_object.context`, works too
  but needs the old context kept as a shell; reloading the chain into one
  live context cannot drop a replaced client CA, since OpenSSL's store only
  grows.)

The files are polled like routes.yaml (content hashes, so a symlink swap by
cert-manager or an in-place write by an ACME client both count).  A new set
is checked as at load (readable, PEM, key matching, not expired) and loaded
into a fresh context; if anything fails the error is logged and the old
context keeps serving.
"""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from gateway.config.loader.tls import TlsFileError, TlsMaterial, read_tls_files
from gateway.config.model import TlsConfig
from gateway.ops.reload import file_digest

log = logging.getLogger("gateway.tls")

TLS_HANDSHAKE_RECORD = b"\x16"  # the content type every TLS ClientHello record starts with
VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
PLAINTEXT_LOG_EVERY = 60.0  # seconds: plain http to the https port is logged once, then at most this often
ACCEPT_RETRY = 0.1  # seconds: after EMFILE and kin, before accepting again


def _plaintext_answer() -> bytes:
    body = json.dumps({"code": "https_required",
                       "description": "this port speaks https only; use https:// (plain http sent to a TLS port)"})
    return (f"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n{body}").encode()


PLAINTEXT_ANSWER = _plaintext_answer()


def _files(tls: TlsConfig) -> list[str]:
    return [tls.cert_file, tls.key_file] + ([tls.client_ca_file] if tls.client_ca_file else [])


class Loaded(NamedTuple):
    context: ssl.SSLContext
    material: TlsMaterial
    digests: tuple  # of the files it was built from


def file_digests(tls: TlsConfig) -> tuple:
    return tuple(file_digest(Path(path)) for path in _files(tls))


def build_context(tls: TlsConfig) -> Loaded:
    """A server context from the files as they are now; raises TlsFileError or ssl.SSLError."""
    before = file_digests(tls)
    material = read_tls_files(tls.cert_file, tls.key_file, tls.client_ca_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSIONS[tls.min_version]
    context.set_alpn_protocols(["http/1.1"])
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=tls.client_ca_file)
    context.verify_mode = VERIFY_MODES[tls.client_certs]
    if file_digests(tls) != before:  # what was checked is what was loaded
        raise TlsFileError("cert_file", "the files changed while they were read; trying again at the next poll")
    return Loaded(context, material, before)


class CertificateRotation:
    """The context new handshakes get, replaced when the files change and the new set is usable.

    A changed set is tried at the first poll that sees it, so a good pair serves within one
    interval.  One that fails is only refused (logged) once two polls in a row read the same
    bytes: a renewal that writes the certificate and then the key, or a file caught half
    written, is not an error, just not ready yet.
    """

    def __init__(self, tls: TlsConfig, on_loaded=lambda material: None):
        self.tls = tls
        self.on_loaded = on_loaded  # (TlsMaterial) -> None: the expiry metric
        self.current = build_context(tls)
        self._last_seen = self._refused = None
        on_loaded(self.current.material)

    @property
    def context(self) -> ssl.SSLContext:
        return self.current.context

    def poll(self) -> bool:
        """Look at the files once; True when a new set was loaded."""
        digests = file_digests(self.tls)
        settled, self._last_seen = digests == self._last_seen, digests
        if digests == self.current.digests or digests == self._refused:
            return False
        old = self.current.material
        try:
            self.current = build_context(self.tls)
        except (TlsFileError, ssl.SSLError, OSError) as exc:
            if settled:
                self._refused = digests
                log.error("TLS certificate rotation refused: %s; the certificate being served (serial %x, "
                          "expires %s UTC) stays in force", exc, old.serial, _when(old.not_after))
            return False
        new = self.current.material
        log.info("TLS certificate rotated: serial %x -> %x (%s, expires %s UTC); new handshakes use it, open "
                 "connections keep theirs", old.serial, new.serial, new.subject, _when(new.not_after))
        self.on_loaded(new)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.poll()


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))


class TlsAcceptor:
    """The listening socket and its accept loop; quacks like the asyncio.Server aiohttp's site expects."""

    def __init__(self, sock: socket.socket, protocol_factory, rotation: CertificateRotation, timeout: float):
        self.sockets = [sock]
        self.protocol_factory = protocol_factory
        self.rotation = rotation
        self.timeout = timeout  # for the first byte, then again for the handshake
        self._task: asyncio.Task | None = None
        self._handshakes: set[asyncio.Task] = set()
        self._waiting: dict[socket.socket, asyncio.TimerHandle] = {}  # accepted, first byte not yet seen
        self._plaintext_seen = 0
        self._plaintext_logged = -PLAINTEXT_LOG_EVERY

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sockets[0]
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE, ENOBUFS, ECONNABORTED: the listener itself is fine
                if exc.errno != errno.ECONNABORTED:
                    log.warning("accepting a connection failed: %s", exc)
                    await asyncio.sleep(ACCEPT_RETRY)
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._waiting[conn] = loop.call_later(self.timeout, self._give_up, conn)
            loop.add_reader(conn.fileno(), self._first_byte, conn)

    def _stop_waiting(self, conn: socket.socket) -> None:
        self._waiting.pop(conn).cancel()
        asyncio.get_running_loop().remove_reader(conn.fileno())

    def _give_up(self, conn: socket.socket) -> None:
        """No byte within the idle timeout (or the listener closes): as for a silent plain-http connection."""
        self._stop_waiting(conn)
        conn.close()

    def _first_byte(self, conn: socket.socket) -> None:
        try:
            head = conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return  # spurious wakeup: still waiting
        except OSError:
            head = b""
        self._stop_waiting(conn)
        if head == TLS_HANDSHAKE_RECORD:
            task = asyncio.get_running_loop().create_task(self._handshake(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)
            return
        if head:
            self._refuse_plaintext(conn)
        conn.close()

    async def _handshake(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.rotation.context,
                                               ssl_handshake_timeout=self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:  # a client without the certificate asked for, a bad hello
            log.debug("TLS handshake failed: %s", exc)
            conn.close()
        except asyncio.CancelledError:
            conn.close()
            raise

    def _refuse_plaintext(self, conn: socket.socket) -> None:
        """400 in plaintext: the request is read first, so closing sends FIN rather than a reset."""
        try:
            peer = conn.getpeername()[0]
            for _ in range(4):  # what has arrived, bounded: a sender that never stops is not waited for
                if not conn.recv(65536):
                    break
        except BlockingIOError:
            pass
        except OSError:
            return
        try:
            conn.send(PLAINTEXT_ANSWER)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._plaintext_seen += 1
        now = time.monotonic()
        if now - self._plaintext_logged >= PLAINTEXT_LOG_EVERY:
            log.warning("plain http sent to the https port (from %s): answered 400 and closed; clients must use "
                        "https:// (%d such connection(s) since the last note; noted at most once a minute)", peer, self._plaintext_seen)
            self._plaintext_seen, self._plaintext_logged = 0, now

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._handshakes):
            task.cancel()
        for conn in list(self._waiting):
            self._give_up(conn)
        self.sockets[0].close()


class TlsSite(web.BaseSite):
    """aiohttp's site for the https listener: the runner's protocol behind TlsAcceptor."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, rotation: CertificateRotation, *,
                 timeout: float, backlog: int = 128, reuse_port: bool = False):
        super().__init__(runner, backlog=backlog)
        self.host, self.port, self.rotation = host, port, rotation
        self.timeout, self.reuse_port = timeout, reuse_port

    @property
    def name(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        sock = listening_socket(self.host, self.port, self._backlog, self.reuse_port)
        acceptor = TlsAcceptor(sock, self._runner.server, self.rotation, self.timeout)
        acceptor.start()
        self._server = acceptor


def listening_socket(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
