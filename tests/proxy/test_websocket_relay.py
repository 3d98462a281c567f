"""WebSockets through the real gateway: authorized like any request, relayed both ways with close codes, closed at token expiry."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.support.processes import free_port


async def _receive(ws, timeout: float = 5.0):
    return await asyncio.wait_for(ws.receive(), timeout)


async def test_frames_and_close_codes_are_relayed_both_ways(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.ws_connect("/ws", headers=bearer(), protocols=("chat.v2",)) as ws:
            assert ws.protocol == "chat.v2"  # negotiated by the upstream, offered by the client
            await ws.send_str("hello")
            assert (await _receive(ws)).data == "echo:hello"
            await ws.send_bytes(b"\x00\x01\x02\xff")
            assert (await _receive(ws)).data == b"\xff\x02\x01\x00"
            await ws.close(code=4321, message=b"client bye")
        await asyncio.wait_for(echo_upstream.controls.ws_closed.wait(), 5)
    received = echo_upstream.controls.ws_received
    assert received == [("text", "hello"), ("binary", b"\x00\x01\x02\xff"), ("close", 4321, "")]
    seen = echo_upstream.last
    assert seen.all("X-Auth-Subject") == ["alice"] and "authorization" not in seen.names()
    assert seen.all("Sec-WebSocket-Protocol") == ["chat.v2"]


async def test_upstream_close_code_and_reason_reach_the_client(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.ws_connect("/ws", headers=bearer()) as ws:
            await ws.send_str("close:4000:upstream bye")
            message = await _receive(ws)
            assert (message.type, message.data, message.extra) == (WSMsgType.CLOSE, 4000, "upstream bye")
        assert ws.close_code == 4000


async def test_upgrade_without_a_token_is_refused_before_any_upgrade(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url) as (_, client):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/ws")
        assert refused.value.status == 401
    assert echo_upstream.seen == []


async def test_query_and_cookie_tokens_only_where_the_route_allows_them(gateway_for, echo_upstream, token):
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.ws_connect(f"/ws?access_token={token()}") as ws:
            await ws.send_str("q")
            assert (await _receive(ws)).data == "echo:q"
        async with client.ws_connect("/ws", headers={"Cookie": f"theme=dark; session={token()}"}) as ws:
            await ws.send_str("c")
            assert (await _receive(ws)).data == "echo:c"
        # /ws-strict keeps the default: header only, so a query token is no token at all
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(f"/ws-strict?access_token={token()}")
        assert refused.value.status == 401


@pytest.mark.parametrize("where", ["header and query", "query twice", "cookie and query"])
async def test_a_token_in_two_places_is_refused_as_ambiguous(gateway_for, echo_upstream, token, where):
    first, second = token(), token(sub="mallory")
    path, headers = {
        "header and query": (f"/ws?access_token={second}", {"Authorization": f"Bearer {first}"}),
        "query twice": (f"/ws?access_token={first}&access_token={second}", {}),
        "cookie and query": (f"/ws?access_token={first}", {"Cookie": f"session={second}"}),
    }[where]
    async with gateway_for(echo_upstream.url) as (gw, _):
        async with aiohttp.ClientSession() as plain:
            async with plain.get(f"http://127.0.0.1:{gw.port}{path}", headers=headers) as r:
                assert r.status == 400 and (await r.json())["code"] == "invalid_request"
    assert echo_upstream.seen == []


async def test_connection_is_closed_with_4001_when_the_token_expires(gateway_for, echo_upstream, token):
    async with gateway_for(echo_upstream.url, provider_extra="leeway: 0") as (_, client):
        async with client.ws_connect("/ws", headers={"Authorization": f"Bearer {token(ttl=2)}"}) as ws:
            await ws.send_str("still valid")
            assert (await _receive(ws)).data == "echo:still valid"
            message = await _receive(ws, timeout=5)  # exp is at most 2 s away
            assert (message.type, message.data, message.extra) == (WSMsgType.CLOSE, 4001, "token expired")
        await asyncio.wait_for(echo_upstream.controls.ws_closed.wait(), 5)
    assert echo_upstream.controls.ws_received[-1] == ("close", 4001, "")


async def test_upstream_refusing_the_upgrade_keeps_its_status(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url) as (_, client):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/ws-refuse", headers=bearer())
        assert refused.value.status == 403
        assert "WWW-Authenticate" not in refused.value.headers  # not the gateway's own refusal


async def test_upstream_down_is_502_before_upgrading(gateway_for, bearer):
    async with gateway_for(f"http://127.0.0.1:{free_port()}") as (_, client):
        async with client.get("/ws", headers={**bearer(), "Connection": "Upgrade", "Upgrade": "websocket",
                                              "Sec-WebSocket-Version": "13",
                                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            assert (r.status, (await r.json())["code"]) == (502, "upstream_unavailable")


async def test_oversized_message_closes_with_1009(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url, extra="limits:\n  max_ws_message_bytes: 1024") as (_, client):
        async with client.ws_connect("/ws", headers=bearer()) as ws:
            await ws.send_str("x" * 2000)
            message = await _receive(ws)
            assert (message.type, message.data) == (WSMsgType.CLOSE, 1009)
        await asyncio.wait_for(echo_upstream.controls.ws_closed.wait(), 5)
    assert ("text", "x" * 2000) not in echo_upstream.controls.ws_received
    assert echo_upstream.controls.ws_received[-1] == ("close", 1009, "")


async def test_upstream_vanishing_closes_the_client_with_1014(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.ws_connect("/ws", headers=bearer()) as ws:
            await ws.send_str("vanish")
            message = await _receive(ws)
            assert (message.type, message.data) == (WSMsgType.CLOSE, 1014)


async def test_client_vanishing_closes_the_upstream_with_1001(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url) as (gw, _):
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(f"http://127.0.0.1:{gw.port}/ws", headers=bearer())
        await ws.send_str("hi")
        assert (await _receive(ws)).data == "echo:hi"
        ws._response.connection.transport.abort()  # the client's TCP connection dies, no close frame
        await session.close()
        await asyncio.wait_for(echo_upstream.controls.ws_closed.wait(), 5)
    assert echo_upstream.controls.ws_received[-1] == ("close", 1001, "")
