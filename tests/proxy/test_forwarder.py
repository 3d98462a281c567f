"""Upstream trouble through the real gateway: pooled connections, 502/504 as counted JSON, isolation, Unix sockets."""
from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from tests.support.processes import free_port
from tests.support.upstream import EchoUpstream, pattern, sha256_of


def status_count(gw, status: int) -> float:
    """Requests the gateway's own metrics counted with this status."""
    return sum(sample.value for metric in gw.metrics.registry.collect() if metric.name == "gateway_requests"
               for sample in metric.samples
               if sample.name == "gateway_requests_total" and sample.labels["status"] == str(status))


async def _json(response) -> tuple[int, str]:
    return response.status, (await response.json())["code"]


async def test_upstream_connections_are_pooled_and_kept_alive(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url) as (_, client):
        for _ in range(5):
            async with client.get("/status/200") as r:
                assert r.status == 200
    assert len({seen.peer_port for seen in echo_upstream.seen}) == 1  # one upstream connection, reused


async def test_refused_and_reset_are_502_json_and_counted(gateway_for, echo_upstream):
    async with gateway_for(f"http://127.0.0.1:{free_port()}") as (gw, client):
        async with client.get("/status/200") as r:
            assert await _json(r) == (502, "upstream_unavailable")
        assert status_count(gw, 502) == 1
    async with gateway_for(echo_upstream.url) as (gw, client):
        async with client.post("/reset", data=b"x") as r:
            assert await _json(r) == (502, "upstream_unavailable")
        async with client.get("/status/200") as r:  # the pool recovers
            assert r.status == 200
        assert status_count(gw, 502) == 1


async def test_read_timeout_is_504_and_others_keep_being_served(gateway_for, echo_upstream):
    extra_upstream = f"\n  url: {echo_upstream.url}\n  read_timeout: 1.5\n"
    async with gateway_for(extra_upstream) as (gw, client):
        started = time.monotonic()
        stalled = asyncio.ensure_future(client.get("/stall"))
        for _ in range(5):  # served while the stalled request waits on its upstream
            async with client.get("/status/200") as r:
                assert r.status == 200
        assert not stalled.done()
        response = await asyncio.wait_for(stalled, 10)
        assert await _json(response) == (504, "upstream_timeout")
        assert 1.4 < time.monotonic() - started < 5
        assert status_count(gw, 504) == 1


async def test_connect_timeout_is_504(gateway_for):
    """A listener whose accept queue is full drops SYNs, so the connect hangs until connect_timeout."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = []
        for _ in range(3):  # fill the accept queue (nobody ever accepts)
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(sock)
        try:
            extra_upstream = f"\n  url: http://127.0.0.1:{port}\n  connect_timeout: 0.5\n"
            async with gateway_for(extra_upstream) as (_, client):
                started = time.monotonic()
                async with client.get("/status/200") as r:
                    assert await _json(r) == (504, "upstream_timeout")
                assert time.monotonic() - started < 4
        finally:
            for sock in fillers:
                sock.close()


async def test_upstream_dying_mid_body_cuts_the_client_short(gateway_for, echo_upstream):
    """Once the response started, a failure must never look like a complete body."""
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.get("/truncated") as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        async with client.get("/status/200") as r:
            assert r.status == 200


async def test_unix_socket_upstream(gateway_for, bearer, tmp_path):
    path = str(tmp_path / "upstream.sock")
    sidecar = await EchoUpstream().start_unix(path)
    try:
        async with gateway_for(f"unix:{path}") as (_, client):
            body = b"".join(pattern(3 * 1024 * 1024, 9))
            async with client.put("/echo/unix?a=1", data=body, headers=bearer()) as r:
                assert r.status == 200
                assert (await r.json())["sha256"] == sha256_of([body])
            assert sidecar.last.target == "/echo/unix?a=1" and sidecar.last.all("X-Auth-Subject") == ["alice"]
            async with client.ws_connect("/ws", headers=bearer()) as ws:
                await ws.send_str("over unix")
                assert (await asyncio.wait_for(ws.receive(), 5)).data == "echo:over unix"
    finally:
        await sidecar.stop()
    async with gateway_for(f"unix:{tmp_path / 'missing.sock'}") as (_, client):
        async with client.get("/status/200") as r:
            assert await _json(r) == (502, "upstream_unavailable")


async def test_read_timeout_bounds_silence_not_the_length_of_a_stream(gateway_for, echo_upstream):
    """The gateway times each wait for upstream bytes itself: a live stream outlasts read_timeout, a silent one is cut."""
    extra_upstream = f"\n  url: {echo_upstream.url}\n  read_timeout: 0.5\n"
    async with gateway_for(extra_upstream) as (gw, client):
        async with client.get("/sse") as r:
            assert r.status == 200
            started = time.monotonic()
            for i in range(5):  # an event every 0.25 s: 1.25 s in all, longer than read_timeout
                echo_upstream.controls.sse_next.put_nowait(f"e{i}")
                assert await asyncio.wait_for(r.content.readline(), 5) == f"data: e{i}\n".encode()
                assert await asyncio.wait_for(r.content.readline(), 5) == b"\n"
                await asyncio.sleep(0.25)  # pacing the upstream, not waiting for the gateway
            assert time.monotonic() - started > 1.0
            with pytest.raises(aiohttp.ClientError):  # then silence: cut, never a clean end
                await asyncio.wait_for(r.content.read(), 5)
