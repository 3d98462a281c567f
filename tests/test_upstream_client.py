"""The lean upstream pool against a real socket server that closes a kept-alive connection as it is reused."""
import asyncio

import pytest

from gateway.proxy.upstream_client import UpstreamGone, UpstreamPool

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def one_answer_per_connection():
    """Answers the first request on each connection; drops the connection on the second, unanswered."""
    connections = []

    async def serve(reader, writer):
        connections.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the reuse: close instead of answering
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, connections


async def roundtrip(pool, method):
    head = f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    connection, message, payload = await pool.request(method, head)
    body = await payload.read()
    pool.release(connection, message, payload)
    return message.code, body


@pytest.mark.parametrize("method, retried", [("GET", True), ("POST", False)])
async def test_a_reused_connection_the_upstream_dropped_is_retried_only_when_idempotent(method, retried):
    server, connections = await one_answer_per_connection()
    pool = UpstreamPool("127.0.0.1", server.sockets[0].getsockname()[1], None, 4, 5, 5)
    try:
        assert await roundtrip(pool, method) == (200, b"ok")
        assert len(pool.idle) == 1  # kept alive for the next request
        if retried:
            assert await roundtrip(pool, method) == (200, b"ok")
            assert len(connections) == 2  # the retry went out on a fresh connection
        else:
            with pytest.raises(UpstreamGone):
                await roundtrip(pool, method)
    finally:
        pool.close()
        server.close()
        await server.wait_closed()


async def test_a_timed_out_connection_is_never_reused():
    async def silent(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(3600)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    pool = UpstreamPool("127.0.0.1", server.sockets[0].getsockname()[1], None, 4, 5, 0.2)
    try:
        with pytest.raises(TimeoutError):
            await roundtrip(pool, "GET")
        assert not pool.idle
    finally:
        pool.close()
        server.close()


async def test_informational_answers_are_skipped_for_the_final_one():
    async def hints(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + ANSWER)
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(hints, "127.0.0.1", 0)
    pool = UpstreamPool("127.0.0.1", server.sockets[0].getsockname()[1], None, 4, 5, 5)
    try:
        assert await roundtrip(pool, "GET") == (200, b"ok")
    finally:
        pool.close()
        server.close()


async def test_requests_in_flight_are_bounded_by_the_pool_size():
    busy, most = 0, 0
    release = asyncio.Event()

    async def slow(reader, writer):
        nonlocal busy, most
        try:
            while True:  # keep-alive: one answer per request head, for as long as the connection lives
                await reader.readuntil(b"\r\n\r\n")
                busy += 1
                most = max(most, busy)
                await release.wait()
                busy -= 1
                writer.write(ANSWER)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    pool = UpstreamPool("127.0.0.1", server.sockets[0].getsockname()[1], None, 2, 5, 5)
    try:
        calls = [asyncio.ensure_future(roundtrip(pool, "GET")) for _ in range(5)]
        while busy < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # room for a third request to (wrongly) get through
        assert most == 2 and not any(call.done() for call in calls)
        release.set()
        assert await asyncio.wait_for(asyncio.gather(*calls), 10) == [(200, b"ok")] * 5
        assert most == 2
    finally:
        pool.close()
        server.close()


async def test_zero_timeouts_mean_no_limit_as_on_aiohttps_path():
    """Whatever the loader lets through, both upstream clients read it alike: aiohttp takes 0 as no limit."""
    async def answers_after_a_moment(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.05)  # an answer that is not instant: a zero timer would fire first
        writer.write(ANSWER)
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(answers_after_a_moment, "127.0.0.1", 0)
    pool = UpstreamPool("127.0.0.1", server.sockets[0].getsockname()[1], None, 4, 0, 0)
    try:
        assert await roundtrip(pool, "GET") == (200, b"ok")
    finally:
        pool.close()
        server.close()
