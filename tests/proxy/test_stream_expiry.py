"""Streams end with their token: SSE, other streamed answers and slow uploads are ended when the token expires.

Tokens live a second or two (leeway 0); the upstream streams only when the test says so, and every wait
is bounded by a deadline, never a sleep standing in for "long enough".
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from tests.support.keys import claims

ROUTES = """\
  - path: /sse
    access: authenticated
  - path: /trickle
    access: authenticated
  - path: /hold
    access: authenticated
  - path: /**
    access: public
"""
LEEWAY_0 = "leeway: 0"


@pytest.fixture
def short_token(rsa_key):
    """A token valid for 1-2 more seconds, and when it expires."""
    def make() -> tuple[str, float]:
        body = claims(ttl=2)
        return rsa_key.sign(body), float(body["exp"])
    return make


def reasons(caplog) -> list[str]:
    return [record.access.reason for record in caplog.records if hasattr(record, "access")]


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met within the deadline"
        await asyncio.sleep(0.02)


async def test_an_sse_stream_ends_with_a_token_expired_event_when_its_token_expires(
        gateway_for, echo_upstream, short_token, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    token, exp = short_token()
    async with gateway_for(echo_upstream.url, routes=ROUTES, provider_extra=LEEWAY_0) as (_, client):
        async with client.get("/sse", headers={"Authorization": f"Bearer {token}"}) as answer:
            assert answer.status == 200
            await echo_upstream.controls.sse_next.put("first")
            assert await asyncio.wait_for(answer.content.readuntil(b"\n\n"), 5) == b"data: first\n\n"
            rest = await asyncio.wait_for(answer.content.read(), 10)  # to the end of the stream
            ended = time.time()
    await echo_upstream.controls.sse_next.put(None)  # the upstream's handler may finish too
    assert exp <= ended < exp + 2
    assert rest.startswith(b"event: token_expired\ndata: ")
    assert json.loads(rest.split(b"data: ", 1)[1])["code"] == "token_expired_during_stream"
    await _until(lambda: "token_expired_during_stream" in reasons(caplog))


async def test_another_streamed_answer_is_cut_without_its_last_chunk(gateway_for, echo_upstream, short_token, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    token, exp = short_token()
    async with gateway_for(echo_upstream.url, routes=ROUTES, provider_extra=LEEWAY_0) as (_, client):
        async with client.get("/trickle", headers={"Authorization": f"Bearer {token}"}) as answer:
            await echo_upstream.controls.sse_next.put("part one")
            assert await asyncio.wait_for(answer.content.readexactly(8), 5) == b"part one"
            with pytest.raises(Exception) as cut:  # the connection closes with the chunked body unfinished
                await asyncio.wait_for(answer.content.read(), 10)
            assert "TimeoutError" not in type(cut.value).__name__
            assert time.time() >= exp
    await echo_upstream.controls.sse_next.put(None)
    await _until(lambda: "token_expired_during_stream" in reasons(caplog))


async def test_the_stream_end_log_names_the_request_never_a_jwt_in_its_path(
        gateway_for, echo_upstream, short_token, caplog):
    """The forwarder's line about a stream ended at expiry printed the canonical path, so a JWT-looking path part
    (masked in the access log) reached the log; it names the request id instead."""
    caplog.set_level(logging.INFO)
    jwt_in_path = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    token, _ = short_token()
    routes = ROUTES.replace("  - path: /**\n", "  - path: /trickle/*\n    access: authenticated\n  - path: /**\n")
    async with gateway_for(echo_upstream.url, routes=routes, provider_extra=LEEWAY_0) as (_, client):
        headers = {"Authorization": f"Bearer {token}", "X-Request-Id": "stream-7"}
        async with client.get(f"/trickle/{jwt_in_path}", headers=headers) as answer:
            await echo_upstream.controls.sse_next.put("part one")
            assert await asyncio.wait_for(answer.content.readexactly(8), 5) == b"part one"
            with pytest.raises(Exception):
                await asyncio.wait_for(answer.content.read(), 10)
    await echo_upstream.controls.sse_next.put(None)
    await _until(lambda: "stream ended, its token expired" in caplog.text)
    assert "request stream-7: stream ended, its token expired" in caplog.text
    assert jwt_in_path not in caplog.text


async def test_a_route_may_let_its_streams_outlive_the_token(gateway_for, echo_upstream, short_token):
    routes = "  - path: /sse\n    access: authenticated\n    streams_outlive_token: true\n"
    token, exp = short_token()
    async with gateway_for(echo_upstream.url, routes=routes, provider_extra=LEEWAY_0) as (_, client):
        async with client.get("/sse", headers={"Authorization": f"Bearer {token}"}) as answer:
            await echo_upstream.controls.sse_next.put("before")
            assert await asyncio.wait_for(answer.content.readuntil(b"\n\n"), 5) == b"data: before\n\n"
            await _until(lambda: time.time() > exp + 0.5)
            await echo_upstream.controls.sse_next.put("after")
            assert await asyncio.wait_for(answer.content.readuntil(b"\n\n"), 5) == b"data: after\n\n"
            await echo_upstream.controls.sse_next.put(None)


async def test_a_slow_upload_is_refused_when_its_token_expires(gateway_for, echo_upstream, short_token, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    token, exp = short_token()
    async with gateway_for(echo_upstream.url, routes=ROUTES, provider_extra=LEEWAY_0) as (gateway, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(f"POST /hold HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Length: 100000\r\n\r\n".encode() + b"x" * 1000)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # read to EOF: the gateway closes after answering
        writer.close()
    assert time.time() >= exp
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ")
    assert json.loads(body)["code"] == "token_expired_during_stream"
    assert "token_expired_during_stream" in reasons(caplog)


async def test_a_websocket_closed_at_expiry_is_logged_as_such_and_a_route_may_opt_out(
        gateway_for, echo_upstream, short_token, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    routes = ("  - path: /ws\n    access: authenticated\n"
              "  - path: /ws-strict\n    access: authenticated\n    streams_outlive_token: true\n")
    token, exp = short_token()
    async with gateway_for(echo_upstream.url, routes=routes, provider_extra=LEEWAY_0) as (_, client):
        headers = {"Authorization": f"Bearer {token}"}
        async with client.ws_connect("/ws", headers=headers) as closing, \
                client.ws_connect("/ws-strict", headers=headers) as lasting:
            message = await asyncio.wait_for(closing.receive(), 10)
            assert (message.type.name, message.data) == ("CLOSE", 4001)
            assert time.time() >= exp
            await lasting.send_str("after expiry")
            assert (await asyncio.wait_for(lasting.receive(), 5)).data == "echo:after expiry"
    await _until(lambda: "token_expired_during_stream" in reasons(caplog))
