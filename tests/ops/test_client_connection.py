"""The fast connection's own duties: backpressure towards a client that stops reading.

(That its answers equal the general path's is tests/security/test_fast_path.py; that llhttp parses
both kinds of connection is tests/security/test_smuggling.py.)
"""
from __future__ import annotations

import asyncio
import socket

from tests.support.config import ECHO_ROUTES, config_text, provider_yaml
from tests.support.gateway import eventually, running_gateway
from tests.support import rawhttp
from tests.support.keys import claims

ANSWER_BYTES = 30_000  # a whole answer, read in one go from the upstream: the fast path's one-write case


async def test_a_client_that_stops_reading_is_not_read_further_until_it_catches_up(provider, echo_upstream):
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), ECHO_ROUTES)
    async with running_gateway(text) as gateway:
        flow = gateway.generation.filter
        answered = []
        observe = flow.observe
        flow.observe = lambda record: (answered.append(record.status), observe(record))
        request = rawhttp.build("GET", f"/download?size={ANSWER_BYTES}")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the client's window fills quickly
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", gateway.port))
        try:
            connection = await eventually(lambda: next(iter(gateway.runner.server.fast), None), what="accepted")
            sent = 0
            while not connection.writing_paused:  # one request at a time, never reading an answer
                assert sent < 2_000, "the gateway's send buffer never filled"
                await loop.sock_sendall(sock, request)
                sent += 1
                await eventually(lambda: len(answered) == sent, what=f"answer {sent}")
            assert connection.held  # it answered into a full buffer: it reads no more of this client

            await loop.sock_sendall(sock, request)  # waits in the socket: the gateway is not reading
            other = await rawhttp.send(gateway.port, rawhttp.build("GET", "/echo-free/x"))  # a turn of the loop
            assert other.status == 200
            assert len(answered) == sent + 1  # the other connection's, not this one's

            received = bytearray()  # the client catches up: every answer, including the one that waited
            expected = (sent + 1) * ANSWER_BYTES
            while received.count(b"HTTP/1.1 200 ") < sent + 1 or len(received) < expected:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10)
                assert chunk, "the gateway closed the connection"
                received += chunk
            assert len(answered) == sent + 2 and set(answered) == {200}
        finally:
            sock.close()


async def _raw_upstream(answer: bytes):
    """An upstream that answers every request head with `answer`: bytes no aiohttp server would send."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_an_upstream_answer_that_cannot_be_relayed_is_a_500_and_the_request_ends(provider):
    """A header value with a control character (the upstream parser is lenient, aiohttp's serializer is not):
    whole and streamed, on a fresh upstream connection (the task path) and on a pooled one (the callback path).
    Each gets the JSON 500 and the connection closes; before, the task path raised out of its task: no
    answer, the connection open (a keep-alive client's next answer would have been read as this one's) and
    the request counted in flight for good."""
    for framing in (b"Content-Length: 2\r\n\r\nok", b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"):
        upstream = await _raw_upstream(b"HTTP/1.1 200 OK\r\nX-Odd: a\x01b\r\n" + framing)
        text = config_text(f"http://127.0.0.1:{upstream.sockets[0].getsockname()[1]}",
                           provider_yaml(provider.jwks_uri), ECHO_ROUTES)
        try:
            async with running_gateway(text) as gateway:
                for attempt in ("fresh upstream connection", "pooled upstream connection"):
                    answer = await asyncio.to_thread(rawhttp.exchange, gateway.port, rawhttp.build("GET", "/x"),
                                                     "GET", 5.0)
                    assert (answer.status, answer.json()["code"], answer.closed) == (500, "internal_error", True), \
                        (framing, attempt)
                    await eventually(lambda: gateway.generation.inflight == 0, what=f"{attempt} ended")
        finally:
            upstream.close()


async def test_a_client_that_leaves_while_its_request_is_upstream_ends_the_request(provider, echo_upstream):
    """The upstream answers after the client closed: the request still ends (its access record written, the
    generation left) on a pooled upstream connection (the callback path) and a fresh one (the task path).
    Before, both wrote to the protocol's transport, None once the connection was lost: an AttributeError out of
    the upstream connection's data_received (or the task), no record, and the generation in flight for good."""
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), ECHO_ROUTES)
    async with running_gateway(text) as gateway:
        flow = gateway.generation.filter
        recorded = []
        observe = flow.observe
        flow.observe = lambda record: (recorded.append((record.path, record.status)), observe(record))
        controls = echo_upstream.controls
        loop = asyncio.get_running_loop()
        for upstream_connection in ("pooled", "fresh"):
            if upstream_connection == "pooled":
                assert (await rawhttp.send(gateway.port, rawhttp.build("GET", "/warm"))).status == 200
            else:
                gateway.forwarder.pool.close()  # nothing idle: the request waits for a new connection in a task
            recorded.clear()
            controls.held.clear()
            controls.release.clear()
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", gateway.port))
            await loop.sock_sendall(sock, rawhttp.build("GET", "/hold"))
            await controls.held.wait()
            sock.close()
            await eventually(lambda: not gateway.runner.server.fast, what="the gateway saw the client leave")
            controls.release.set()
            await eventually(lambda: recorded == [("/hold", 200)], what=f"the record ({upstream_connection})")
            await eventually(lambda: gateway.generation.inflight == 0, what=f"in flight ({upstream_connection})")


async def test_an_unexpected_error_while_verifying_a_token_is_a_500_as_on_the_general_path(provider, echo_upstream,
                                                                                           rsa_key):
    """A token to verify is awaited in a task (admit_pending); an error there that is no refusal (a bug, a
    library's surprise) is the JSON 500 that aiohttp's handle_error gives on the general path, and the request
    ends.  Before, it escaped the task: no answer, the connection open and the generation in flight for good."""
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), ECHO_ROUTES)
    async with running_gateway(text) as gateway:
        flow = gateway.generation.filter

        async def failing(token, allowed):
            raise RuntimeError("a surprise in the verifier")

        flow.authenticator.verifier.verify_bearer = failing
        request = rawhttp.build("GET", "/echo/x", [("Authorization", f"Bearer {rsa_key.sign(claims())}")])
        for hand_off_first in (False, True):  # the fast path, then aiohttp's (a HEAD hands the connection over)
            connection = rawhttp.Connection(gateway.port, timeout=5.0)
            try:
                if hand_off_first:
                    await asyncio.to_thread(connection.request, rawhttp.build("HEAD", "/x"), "HEAD")
                answer = await asyncio.to_thread(connection.request, request)
            finally:
                connection.close()
            assert (answer.status, answer.json()["code"]) == (500, "internal_error"), hand_off_first
            await eventually(lambda: gateway.generation.inflight == 0, what="the request ended")


async def test_a_request_on_a_dropped_kept_alive_upstream_connection_is_retried_once_on_a_fresh_one(provider):
    """Two idle upstream connections the upstream has dropped (it answers one request per connection, then
    closes the next one unanswered, as a keep-alive timeout racing a reuse does): the request goes out twice,
    on the stale connection and then on a new one, as UpstreamPool.request retries on the general path."""
    sends = []
    waiting: list[asyncio.StreamWriter] = []
    two_waiting = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for answered in range(2):
                await reader.readuntil(b"\r\n\r\n")
                sends.append(answered)
                if answered:  # a reused connection: dropped, unanswered
                    break
                waiting.append(writer)
                if len(waiting) == 2:
                    two_waiting.set()
                if len(waiting) <= 2:  # the first two connections answer together, so both go back to the pool
                    await two_waiting.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    upstream = await asyncio.start_server(serve, "127.0.0.1", 0)
    text = config_text(f"http://127.0.0.1:{upstream.sockets[0].getsockname()[1]}", provider_yaml(provider.jwks_uri),
                       ECHO_ROUTES)
    try:
        async with running_gateway(text) as gateway:
            first_two = [rawhttp.send(gateway.port, rawhttp.build("GET", "/x")) for _ in range(2)]
            assert [answer.status for answer in await asyncio.gather(*first_two)] == [200, 200]
            await eventually(lambda: len(gateway.forwarder.pool.idle) == 2, what="two idle upstream connections")
            sends.clear()
            answer = await rawhttp.send(gateway.port, rawhttp.build("GET", "/x"))
            assert answer.status == 200
            assert sends == [1, 0]  # the stale connection's second request, then a fresh connection's first
    finally:
        upstream.close()


async def test_blank_lines_before_a_request_are_not_kept_without_limit(provider, echo_upstream):
    """llhttp skips any number of CRLFs before a request line; the fast connection kept every byte since the
    last answer (for a hand-off to replay), so one client could make it hold gigabytes within the idle
    timeout.  Past 64 KiB without a whole head it hands the connection to aiohttp, which keeps none."""
    text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri), ECHO_ROUTES)
    async with running_gateway(text) as gateway:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", gateway.port))
        try:
            connection = await eventually(lambda: next(iter(gateway.runner.server.fast), None), what="accepted")
            await loop.sock_sendall(sock, b"\r\n" * (1 << 19))  # 1 MiB
            await eventually(lambda: connection not in gateway.runner.server.fast, what="handed to aiohttp")
            assert len(connection.unanswered) == 0
            await loop.sock_sendall(sock, rawhttp.build("GET", "/x", [("Connection", "close")]))
            received = bytearray()
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10):
                received += chunk
            assert received.startswith(b"HTTP/1.1 200 OK\r\n"), bytes(received[:200])
        finally:
            sock.close()
