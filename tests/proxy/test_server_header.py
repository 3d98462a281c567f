"""The Server header: the gateway's own answers name no product version; the upstream's passes unchanged.

aiohttp adds `Server: Python/3.x aiohttp/3.x` to every answer that has none,
which tells a scanner which CVEs to try.  Answers the gateway makes itself
say `Server: gateway`; forwarded answers carry the upstream's own value.
"""
from __future__ import annotations

import asyncio

from gateway.ops.admin import AdminServer
from tests.support import rawhttp
from tests.support.processes import free_port

ROUTES = """\
  - path: /echo/**
    access: authenticated
  - path: /status/**
    access: public
  - path: /admin/**
    access:
      scopes: [read:admin]
  - path: /cors/**
    access: authenticated
    cors: {allow_origins: [https://app.test], allow_headers: [Authorization]}
  - path: /ws-refuse
    access: authenticated
  - path: /ws
    access: authenticated
  - path: /user
    access: public
  - path: /plain
    methods: [GET]
    access: public
  - path: /no-server-header
    access: public
"""


def _no_version(headers: list[tuple[str, str]]) -> bool:
    return not any("aiohttp" in value.lower() or "python" in value.lower() for _, value in headers)


async def _upgrade_head(port: int, headers: dict[str, str]) -> bytes:
    """The head of the gateway's 101 answer to a WebSocket upgrade, as bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(rawhttp.build("GET", "/ws", [*headers.items(), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                                  ("Sec-WebSocket-Version", "13"),
                                                  ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]))
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()


async def test_answers_the_gateway_makes_itself_say_server_gateway_without_versions(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url, routes=ROUTES) as (gw, _):
        answers = {
            "401": await rawhttp.send(gw.port, rawhttp.build("GET", "/echo/x")),
            "403": await rawhttp.send(gw.port, rawhttp.build("GET", "/admin/x", list(bearer().items()))),
            "404": await rawhttp.send(gw.port, rawhttp.build("GET", "/nowhere")),
            "405": await rawhttp.send(gw.port, rawhttp.build("DELETE", "/plain")),
            "400": await rawhttp.send(gw.port, b"GET /%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n"),
            "preflight": await rawhttp.send(gw.port, rawhttp.build("OPTIONS", "/cors/x", [
                ("Origin", "https://app.test"), ("Access-Control-Request-Method", "GET")])),
            "preflight refused": await rawhttp.send(gw.port, rawhttp.build("OPTIONS", "/cors/x", [
                ("Origin", "https://evil.test"), ("Access-Control-Request-Method", "GET")])),
            "ws refused upstream": await rawhttp.send(gw.port, rawhttp.build("GET", "/ws-refuse", [
                *bearer().items(), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])),
        }
        upgrade = await _upgrade_head(gw.port, bearer())
        answers["malformed"] = await rawhttp.send(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
    async with gateway_for(f"http://127.0.0.1:{free_port()}", routes=ROUTES) as (gw, _):
        answers["502"] = await rawhttp.send(gw.port, rawhttp.build("GET", "/status/200"))
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {"401": 401, "403": 403, "404": 404, "405": 405, "400": 400, "preflight": 204,
                        "preflight refused": 403, "ws refused upstream": 403, "malformed": 400, "502": 502}
    for name, answer in answers.items():
        assert answer.header("Server") == "gateway", (name, answer.headers)
        assert _no_version(answer.headers), (name, answer.headers)
    assert upgrade.startswith(b"HTTP/1.1 101") and b"\r\nServer: gateway\r\n" in upgrade
    assert b"aiohttp" not in upgrade.lower() and b"python" not in upgrade.lower()


async def test_forwarded_answers_keep_the_upstreams_own_server_header(gateway_for, flask_upstream, echo_upstream):
    async with gateway_for(flask_upstream, routes=ROUTES) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/user"))
    assert answer.status == 200 and answer.header("Server") == "gunicorn"
    async with gateway_for(echo_upstream.url, routes=ROUTES) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("POST", "/status/200", body=b"x"))
    assert answer.header("Server").startswith("Python/")  # the aiohttp upstream's own, passed on as it is


async def test_a_forwarded_answer_without_server_gets_the_gateways_without_versions(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url, routes=ROUTES) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/no-server-header"))
    assert answer.status == 200 and answer.body == b"ok"
    assert answer.header("Server") == "gateway"


async def test_the_admin_listener_names_no_versions_either():
    admin = AdminServer("127.0.0.1", free_port(), lambda: [], lambda: b"")
    await admin.start()
    try:
        answers = [await rawhttp.send(admin.port, rawhttp.build("GET", path)) for path in ("/healthz", "/nowhere")]
    finally:
        await admin.stop()
    assert [answer.status for answer in answers] == [200, 404]
    assert all(answer.header("Server") == "gateway" for answer in answers)
