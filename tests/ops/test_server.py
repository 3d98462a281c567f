"""SIGTERM on a gateway process: stop accepting, finish what is in flight up to the deadline, exit 0."""
from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest
from aiohttp import WSMsgType


async def _refused(port: int, deadline: float) -> float:
    """Poll until a new connection is refused; returns when that happened."""
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
        except ConnectionRefusedError:
            return time.monotonic()
        assert time.monotonic() < deadline, "the gateway kept accepting connections after SIGTERM"
        await asyncio.sleep(0.02)


async def _exit_code(gw, deadline: float) -> int:
    while gw.process.poll() is None:
        assert time.monotonic() < deadline, "the gateway did not exit"
        await asyncio.sleep(0.02)
    return gw.process.returncode


async def test_sigterm_finishes_requests_in_flight_then_exits_0(gateway_process, echo_upstream, bearer, record_property):
    gw = await gateway_process(echo_upstream.url, extra="clients:\n  drain_timeout: 10")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        in_flight = asyncio.ensure_future(client.put(gw.url + "/hold", data=b"u" * 100_000))
        await asyncio.wait_for(echo_upstream.controls.held.wait(), 5)  # the upstream has it, and holds it
        signalled = time.monotonic()
        gw.process.send_signal(signal.SIGTERM)
        closed_at = await _refused(gw.port, signalled + 5)
        assert not in_flight.done()  # still waiting for its upstream: not cut short
        echo_upstream.controls.release.set()
        response = await asyncio.wait_for(in_flight, 10)
        assert (response.status, await response.text()) == (200, "held 100000")
        assert await _exit_code(gw, signalled + 10) == 0
        exited_at = time.monotonic()
    record_property("drain_listener_closed_after_s", round(closed_at - signalled, 3))
    record_property("drain_exit_after_release_s", round(exited_at - signalled, 3))


async def test_sigterm_deadline_cuts_the_rest_and_websockets_get_1001(gateway_process, echo_upstream, bearer,
                                                                      record_property):
    gw = await gateway_process(echo_upstream.url, extra="clients:\n  drain_timeout: 1")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        ws = await client.ws_connect(gw.url + "/ws", headers=bearer())
        stuck = asyncio.ensure_future(client.get(gw.url + "/hold"))
        await asyncio.wait_for(echo_upstream.controls.held.wait(), 5)
        signalled = time.monotonic()
        gw.process.send_signal(signal.SIGTERM)
        message = await asyncio.wait_for(ws.receive(), 5)
        ws_closed_after = time.monotonic() - signalled
        assert (message.type, message.data) == (WSMsgType.CLOSE, 1001)
        assert ws_closed_after < 0.9  # told at once, not cut at the deadline
        await ws.close()
        with pytest.raises(aiohttp.ClientError):  # never released: cut at the deadline, not answered
            response = await asyncio.wait_for(stuck, 10)
            await response.read()
        assert await _exit_code(gw, signalled + 5) == 0
        exit_after = time.monotonic() - signalled
    assert 0.9 < exit_after < 2.5  # drain_timeout, then cancel and exit
    record_property("drain_websocket_closed_after_s", round(ws_closed_after, 3))
    record_property("drain_deadline_exit_after_s", round(exit_after, 3))


async def test_sigterm_right_after_a_reload_still_drains_requests_of_the_old_rules(gateway_process, echo_upstream):
    """Found in review: drain waited only on the newest generation, cutting requests of the previous one."""
    gw = await gateway_process(echo_upstream.url, extra="clients:\n  drain_timeout: 10")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        in_flight = asyncio.ensure_future(client.get(gw.url + "/hold"))
        await asyncio.wait_for(echo_upstream.controls.held.wait(), 5)
        gw.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "applied" not in gw.log.read_text():
            assert time.monotonic() < deadline, "the reload was not applied"
            await asyncio.sleep(0.02)
        gw.process.send_signal(signal.SIGTERM)
        await _refused(gw.port, time.monotonic() + 5)
        done, _ = await asyncio.wait([in_flight], timeout=0.5)  # well past aiohttp's 50 ms cancel grace
        assert not done, "the request of the previous rules was cut short"
        echo_upstream.controls.release.set()
        response = await asyncio.wait_for(in_flight, 10)
        assert response.status == 200
        assert await _exit_code(gw, time.monotonic() + 10) == 0


def test_serving_freezes_startup_objects_and_collects_young_garbage_less_often():
    """What `serve` does once it listens (its CPU effect is measured by `make bench`, not here)."""
    import gc

    from gateway.ops.server import GC_YOUNG_THRESHOLD, settle_garbage_collector

    before = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
