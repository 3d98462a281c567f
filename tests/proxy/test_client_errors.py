"""Client-side limits of the real gateway: clear JSON 4xx for oversized requests, slow and idle clients cut off."""
from __future__ import annotations

import asyncio
import logging
import time

from tests.support import rawhttp


async def test_request_line_too_long_is_414(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/echo/" + "a" * 9000))
    assert (answer.status, answer.json()["code"]) == (414, "uri_too_long")
    assert echo_upstream.seen == []


async def test_header_too_large_is_431_and_the_token_is_not_logged(gateway_for, echo_upstream, token, caplog):
    caplog.set_level(logging.DEBUG)
    secret = token(padding="p" * 20000)  # a real token, longer than one header line may be
    async with gateway_for(echo_upstream.url) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/echo/x", [("Authorization", f"Bearer {secret}")]))
    assert (answer.status, answer.json()["code"]) == (431, "request_header_fields_too_large")
    logged = caplog.text
    assert "request_header_fields_too_large" in logged  # the refusal is logged ...
    assert secret[:40] not in logged and "eyJ" not in logged  # ... without a byte of the token


async def test_too_many_headers_is_431(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/status/200",
                                                           [(f"X-H{i}", "v") for i in range(101)]))
    assert (answer.status, answer.json()["code"]) == (431, "request_header_fields_too_large")


async def test_token_too_long_is_401_invalid_header(gateway_for, echo_upstream, token):
    async with gateway_for(echo_upstream.url) as (gw, _):
        long_token = token(padding="p" * 7000)
        assert 8192 < len(long_token) < 16000  # fits a header line, not the token limit
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/echo/x", [("Authorization", f"Bearer {long_token}")]))
    assert (answer.status, answer.json()["code"]) == (401, "invalid_header")
    assert "longer than 8192" in answer.json()["description"]


async def test_garbage_is_400_json(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url) as (gw, _):
        answer = await rawhttp.send(gw.port, b"GET /status/200 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert (answer.status, answer.json()["code"]) == (400, "malformed_request")


async def _slowloris(port: int, closed: list[float]) -> None:
    """Send a request head one byte at a time, forever; record when the gateway hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /status/200 HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                    break  # EOF: the gateway closed the connection
            except asyncio.TimeoutError:
                continue
    except ConnectionError:
        pass
    closed.append(time.monotonic())
    writer.close()


async def test_slowloris_clients_are_cut_off_while_others_are_served(gateway_for, echo_upstream):
    idle = 1.0
    async with gateway_for(echo_upstream.url, extra=f"clients:\n  idle_timeout: {idle}") as (gw, client):
        closed: list[float] = []
        started = time.monotonic()
        attackers = [asyncio.ensure_future(_slowloris(gw.port, closed)) for _ in range(200)]
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", gw.port)  # sends nothing at all
        answered = []  # when each ordinary request was answered
        while not all(a.done() for a in attackers):
            async with client.get("/status/200") as r:
                assert r.status == 200
            answered.append(time.monotonic())
            assert time.monotonic() - started < idle + 5, "slow clients were not cut off"
            await asyncio.sleep(0.05)
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # the idle one too
        idle_writer.close()
    assert len(closed) == 200 and max(closed) - started < idle + 3
    assert min(closed) - started >= idle * 0.9  # cut off by the idle deadline, not before
    # ordinary clients were served while all 200 slow ones still held their connections (no speed asserted)
    assert len([t for t in answered if t < min(closed)]) >= 3


async def test_idle_keep_alive_connection_is_closed(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url, extra="clients:\n  idle_timeout: 0.5") as (gw, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(rawhttp.build("GET", "/status/204"))
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 204")
        started = time.monotonic()
        await asyncio.wait_for(reader.read(), 5)  # drains the rest of the answer, then EOF
        assert 0.4 < time.monotonic() - started < 3
        writer.close()
