"""Bodies through the real gateway: byte-identical both ways, framing kept, HEAD/204/304, 100-continue, SSE as produced."""
from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.support.upstream import pattern, sha256_of
from tests.support import rawhttp

SIZE = 24 * 1024 * 1024 + 12345  # several socket buffers, not a multiple of any chunk size


async def _generate(size: int, seed: int):
    for block in pattern(size, seed):
        yield block


@pytest.mark.parametrize("framing", ["chunked", "fixed"])
async def test_upload_is_byte_identical_and_keeps_its_framing(gateway_for, echo_upstream, bearer, framing):
    expected = sha256_of(pattern(SIZE, 1))
    async with gateway_for(echo_upstream.url) as (_, client):
        data = _generate(SIZE, 1) if framing == "chunked" else b"".join(pattern(SIZE, 1))
        async with client.put("/echo/upload", data=data, headers=bearer()) as r:
            assert r.status == 200
            body = await r.json()
    assert (body["length"], body["sha256"]) == (SIZE, expected)
    seen = echo_upstream.last
    if framing == "chunked":
        assert seen.header("Transfer-Encoding") == "chunked" and seen.header("Content-Length") is None
    else:
        assert seen.header("Content-Length") == str(SIZE) and seen.header("Transfer-Encoding") is None


@pytest.mark.parametrize("framing", ["chunked", "fixed"])
async def test_download_is_byte_identical_and_keeps_its_framing(gateway_for, echo_upstream, framing):
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.get(f"/download?size={SIZE}&framing={framing}&seed=2&id=d") as r:
            assert r.status == 200
            digest = hashlib.sha256()
            async for chunk in r.content.iter_any():
                digest.update(chunk)
            if framing == "fixed":
                assert r.headers["Content-Length"] == str(SIZE) and "Transfer-Encoding" not in r.headers
            else:
                assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
    assert digest.hexdigest() == echo_upstream.controls.download_sha256["d"] == sha256_of(pattern(SIZE, 2))


async def test_body_streams_through_both_ways_at_once(gateway_for, echo_upstream, bearer):
    """The upstream echoes while it reads: neither side is buffered whole by the gateway."""
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.post("/stream-echo", data=_generate(SIZE, 3), headers=bearer()) as r:
            assert r.status == 200
            got = hashlib.sha256()
            async for chunk in r.content.iter_any():
                got.update(chunk)
    assert got.hexdigest() == sha256_of(pattern(SIZE, 3))


async def test_head_204_304_have_no_body(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url) as (gw, _):
        head = await rawhttp.send(gw.port, rawhttp.build("HEAD", "/status/200"), method="HEAD")
        assert (head.status, head.body, head.header("Content-Length")) == (200, b"", "1000")
        assert echo_upstream.last.method == "HEAD"
        for code in (204, 304):
            answer = await rawhttp.send(gw.port, rawhttp.build("GET", f"/status/{code}"))
            assert (answer.status, answer.body) == (code, b"")
            assert answer.header("ETag") == '"v1"' and answer.header("Transfer-Encoding") is None
        # the connection stays usable: nothing of a phantom body is left on the wire
        answers = await asyncio.to_thread(rawhttp.exchange_many, gw.port,
                                          [rawhttp.build("GET", "/status/204"), rawhttp.build("GET", "/status/304"),
                                           rawhttp.build("GET", "/status/200")])
        assert [a.status for a in answers] == [204, 304, 200] and answers[2].body == b"x" * 1000


async def test_expect_100_continue_is_answered_once_authorized(gateway_for, echo_upstream, bearer):
    body = b"".join(pattern(3 * 1024 * 1024, 4))
    async with gateway_for(echo_upstream.url) as (gw, client):
        # aiohttp's client waits for the 100 before it sends a single body byte
        async with client.post("/echo/expect", data=body, headers=bearer(), expect100=True) as r:
            assert r.status == 200
            assert (await r.json())["sha256"] == hashlib.sha256(body).hexdigest()
        assert "Expect" not in {k for k, _ in echo_upstream.last.headers}  # answered here, not passed on
        before = len(echo_upstream.seen)
        # refused before the body: 401 instead of 100, the connection closes, the upstream sees nothing
        answer = await rawhttp.send(gw.port, rawhttp.build("POST", "/echo/expect", [
            ("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        assert (answer.status, answer.json()["code"], answer.closed) == (401, "authorization_header_missing", True)
        assert len(echo_upstream.seen) == before
        answer = await rawhttp.send(gw.port, rawhttp.build("POST", "/echo/x", [
            ("Expect", "something-else"), ("Content-Length", "3")] + list(bearer().items()), b"abc"))
        assert (answer.status, answer.json()["code"]) == (417, "expectation_failed")


async def test_sse_events_arrive_as_they_are_produced(gateway_for, echo_upstream):
    """The upstream sends event n+1 only after the client has read event n: buffering would deadlock."""
    events = echo_upstream.controls
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.get("/sse") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            for n in range(5):
                await events.sse_next.put(f"event-{n}")
                line = await asyncio.wait_for(r.content.readuntil(b"\n\n"), timeout=5)
                assert line == f"data: event-{n}\n\n".encode()
                assert events.sse_sent == [f"event-{i}" for i in range(n + 1)]  # the last is not sent yet
            await events.sse_next.put(None)
            assert await r.content.read() == b""


async def test_body_over_the_limit_is_413(gateway_for, echo_upstream, bearer):
    limit = 1024 * 1024
    async with gateway_for(echo_upstream.url, extra=f"limits:\n  max_body_bytes: {limit}") as (_, client):
        before = len(echo_upstream.seen)
        async with client.put("/echo/big", data=b"x" * (limit + 1), headers=bearer()) as r:
            assert (r.status, (await r.json())["code"]) == (413, "payload_too_large")
        assert len(echo_upstream.seen) == before  # declared too large: never forwarded
        async with client.put("/echo/big", data=_generate(4 * limit, 5), headers=bearer()) as r:
            assert (r.status, (await r.json())["code"]) == (413, "payload_too_large")
        async with client.put("/echo/ok", data=_generate(limit, 5), headers=bearer()) as r:
            assert r.status == 200 and (await r.json())["length"] == limit


async def test_client_that_stops_sending_its_body_gets_408(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url, extra="clients:\n  body_timeout: 0.3") as (gw, client):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        headers = [("Content-Length", "1000")] + list(bearer().items())
        writer.write(rawhttp.build("POST", "/echo/slow", headers) + b"only-part")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        assert status_line.startswith(b"HTTP/1.1 408 ")
        rest = await asyncio.wait_for(reader.read(), timeout=5)  # then the connection closes
        assert b'"request_timeout"' in rest
        writer.close()
        async with client.get("/status/200") as r:  # others are unaffected
            assert r.status == 200
