"""Keep-alive races against the real upstream (gunicorn gthread): no 502 while it answers, no request run twice.

The Flask view /user allows GET only, so gunicorn answers a POST with 405
before its app has read the body.  Sixteen connections alternate a 64 KiB
POST with a GET through a gateway process; every POST carries its own
X-Request-Id, which gunicorn's access log records, so the test can count how
many times the upstream processed each one.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter

import aiohttp
import pytest

from tests.support.processes import start_flask_upstream, stop_process

CONNECTIONS = 16
ROUNDS = int(os.environ.get("KEEPALIVE_RACE_ROUNDS", "12"))  # 16 x 12 = 192 POSTs and 192 GETs
BODY = os.urandom(64 * 1024)
ACCESS_FORMAT = "%(m)s %(U)s %(s)s %({x-request-id}i)s"


@pytest.fixture
def gunicorn_upstream(tmp_path):
    """The shipped upstream and settings (2 workers x 8 threads), with an access log naming each request's id."""
    access = tmp_path / "access.log"
    process, url = start_flask_upstream(tmp_path / "gunicorn.log", "--access-logfile", str(access),
                                        "--access-logformat", ACCESS_FORMAT, workers=2, threads=8)
    yield url, access
    stop_process(process)


async def _client(base: str, statuses: Counter, post_ids: list[str]) -> None:
    """One client connection alternating a POST the upstream refuses unread and a GET."""
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(ROUNDS):
            request_id = uuid.uuid4().hex
            post_ids.append(request_id)
            async with session.post("/user", data=BODY, headers={"X-Request-Id": request_id}) as answer:
                await answer.read()
                statuses["POST", answer.status] += 1
            async with session.get("/user") as answer:
                await answer.read()
                statuses["GET", answer.status] += 1


def _posts_seen(access_log, expected: int, timeout: float = 10.0) -> Counter:
    """Request ids of the POSTs in gunicorn's access log, once it holds `expected` of them (or the deadline passed)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = access_log.read_text().splitlines() if access_log.exists() else []
        seen = Counter(line.split()[3] for line in lines if line.startswith("POST /user"))
        if sum(seen.values()) >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


async def test_early_answers_without_reading_the_body_never_become_502s_nor_resends(gunicorn_upstream,
                                                                                     gateway_process):
    url, access_log = gunicorn_upstream
    gateway = await gateway_process(url)
    statuses: Counter = Counter()
    post_ids: list[str] = []
    await asyncio.gather(*(_client(gateway.url, statuses, post_ids) for _ in range(CONNECTIONS)))
    seen = _posts_seen(access_log, len(post_ids))
    total = CONNECTIONS * ROUNDS
    print(f"statuses {dict(statuses)}; POSTs counted by the upstream {sum(seen.values())} of {total}")
    assert statuses == Counter({("POST", 405): total, ("GET", 200): total})
    assert {request_id: count for request_id, count in seen.items() if count != 1} == {}
    assert set(seen) == set(post_ids)  # every POST reached the upstream exactly once


async def test_the_lean_pool_drops_a_connection_idle_for_keepalive_seconds(gateway_for, echo_upstream):
    """`upstream.keepalive`: reused while fresh, replaced once idle that long (before the upstream closes it)."""
    async with gateway_for(f"{{url: {echo_upstream.url}, keepalive: 0.3}}") as (_, client):
        for _ in range(2):
            async with client.get("/status/200") as answer:
                assert answer.status == 200
        loop = asyncio.get_running_loop()
        idle_since = loop.time()  # the gateway (same loop) pooled the connection before this answer arrived
        while loop.time() - idle_since <= 0.3:  # wait on the clock: nothing here races
            await asyncio.sleep(0.05)
        async with client.get("/status/200") as answer:
            assert answer.status == 200
    ports = [seen.peer_port for seen in echo_upstream.seen]
    assert ports[0] == ports[1] != ports[2]


async def test_head_is_retried_on_a_dropped_reused_connection_and_bodies_never_reuse_one(gateway_for, echo_upstream):
    """aiohttp's path: an idempotent HEAD is sent again once; a POST always has a connection of its own."""
    async with gateway_for(echo_upstream.url) as (_, client):
        statuses = []
        for method in ("HEAD", "HEAD", "POST", "POST", "PUT"):
            data = b"body" if method != "HEAD" else None
            async with client.request(method, "/once-per-connection", data=data) as answer:
                await answer.read()
                statuses.append(answer.status)
    assert statuses == [200] * 5
    requests_per_connection: dict[int, list[str]] = {}  # by client port, a dropped reuse included
    for seen in echo_upstream.seen:
        requests_per_connection.setdefault(seen.peer_port, []).append(seen.method)
    bodies = [methods for methods in requests_per_connection.values() if methods[0] != "HEAD"]
    assert [methods[0] for methods in bodies] == ["POST", "POST", "PUT"]  # each sent once
    assert all(len(methods) == 1 for methods in bodies)  # on a connection of its own, never reused after it
