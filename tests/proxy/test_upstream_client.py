"""The lean upstream pool against the echo upstream: a kept-alive connection dropped as it is reused, silence,
informational answers, and the bound on requests in flight."""
import asyncio
import json

import pytest

from gateway.proxy.upstream_client import UpstreamGone, UpstreamPool
from tests.support.gateway import eventually


def pool_for(upstream, size: int = 4, read_timeout: float = 5) -> UpstreamPool:
    return UpstreamPool("127.0.0.1", upstream.port, None, size, 5, read_timeout)


async def roundtrip(pool, method, path):
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    connection, message, payload = await pool.request(method, head)
    body = await payload.read()
    pool.release(connection, message, payload)
    return message.code, body


async def echoed_target(pool, method, path):
    """The target the echo upstream saw, from its 200 answer."""
    code, body = await roundtrip(pool, method, path)
    assert code == 200, body
    return json.loads(body)["target"]


@pytest.mark.parametrize("method, retried", [("GET", True), ("POST", False)])
async def test_a_reused_connection_the_upstream_dropped_is_retried_only_when_idempotent(echo_upstream, method,
                                                                                         retried):
    pool = pool_for(echo_upstream)
    try:
        assert await echoed_target(pool, method, "/once-per-connection") == "/once-per-connection"
        assert len(pool.idle) == 1  # kept alive for the next request
        if retried:
            assert await echoed_target(pool, method, "/once-per-connection") == "/once-per-connection"
            assert len({seen.peer_port for seen in echo_upstream.seen}) == 2  # the retry went out on a fresh connection
        else:
            with pytest.raises(UpstreamGone):
                await roundtrip(pool, method, "/once-per-connection")
    finally:
        pool.close()


async def test_a_timed_out_connection_is_never_reused(echo_upstream):
    pool = pool_for(echo_upstream, read_timeout=0.2)
    try:
        with pytest.raises(TimeoutError):
            await roundtrip(pool, "GET", "/stall")
        assert not pool.idle
    finally:
        pool.close()


async def test_a_reused_connection_times_out_at_its_own_deadline_not_at_the_first_requests(echo_upstream):
    """One read timer per connection, armed by its first request: it must neither cut a later request short
    when the first request's deadline passes, nor forget to time it out."""
    pool = pool_for(echo_upstream, read_timeout=0.6)
    loop = asyncio.get_running_loop()
    try:
        assert await echoed_target(pool, "GET", "/first") == "/first"
        connection = pool.idle[-1]
        await asyncio.sleep(0.3)  # not a race: it puts the first deadline, still armed, inside the next wait
        started = loop.time()
        with pytest.raises(TimeoutError, match="within read_timeout"):
            await asyncio.wait_for(roundtrip(pool, "GET", "/stall"), 10)
        assert loop.time() - started >= 0.6
        await eventually(lambda: connection.closed, what="the timed-out kept-alive connection closed")
        assert not pool.idle
    finally:
        pool.close()


async def test_informational_answers_are_skipped_for_the_final_one(echo_upstream):
    pool = pool_for(echo_upstream)
    try:
        assert await echoed_target(pool, "GET", "/early-hints") == "/early-hints"
    finally:
        pool.close()


async def test_requests_in_flight_are_bounded_by_the_pool_size(echo_upstream):
    controls = echo_upstream.controls
    pool = pool_for(echo_upstream, size=2)
    try:
        calls = [asyncio.ensure_future(roundtrip(pool, "GET", "/hold")) for _ in range(5)]
        await eventually(lambda: controls.holding == 2, what="two requests held by the upstream")
        await asyncio.sleep(0.1)  # room for a third request to (wrongly) get through
        assert controls.most_held == 2 and not any(call.done() for call in calls)
        controls.release.set()
        assert await asyncio.wait_for(asyncio.gather(*calls), 10) == [(200, b"held 0")] * 5
        assert controls.most_held == 2
    finally:
        pool.close()


async def test_zero_timeouts_mean_no_limit_as_on_aiohttps_path(echo_upstream):
    """Whatever the loader lets through, both upstream clients read it alike: aiohttp takes 0 as no limit."""
    pool = UpstreamPool("127.0.0.1", echo_upstream.port, None, 4, 0, 0)
    try:
        call = asyncio.ensure_future(roundtrip(pool, "GET", "/hold"))
        await asyncio.wait_for(echo_upstream.controls.held.wait(), 10)
        # an answer that is not instant: a zero timer would fire first
        asyncio.get_running_loop().call_later(0.05, echo_upstream.controls.release.set)
        assert await asyncio.wait_for(call, 10) == (200, b"held 0")
    finally:
        pool.close()
