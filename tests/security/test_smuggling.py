"""Request smuggling over raw sockets: ambiguous framing is refused, and what is forwarded is re-framed cleanly.

The gateway relies on aiohttp's C (llhttp) parser, which is strict about
framing; the pure-Python fallback is laxer, so the first test proves the C
parser is the one actually parsing the gateway's connections.
"""
import asyncio
import base64
import json
import socket
import subprocess
import sys

import pytest
from aiohttp import http_parser, web_protocol

from gateway.ops import client_connection
from tests.support import rawhttp
from tests.security.stack import assert_refused, echoed

H = b"Host: gw.test\r\n"


async def test_aiohttp_c_parser_parses_the_gateways_connections(stack):
    """Both kinds of connection: one on the fast path (ops/client_connection.py) and one it handed to aiohttp."""
    assert http_parser.HttpRequestParser is http_parser.HttpRequestParserC
    assert web_protocol.HttpRequestParser is http_parser.HttpRequestParserC
    assert client_connection.HttpRequestParser is http_parser.HttpRequestParserC
    server = stack.gateway.runner.server
    with socket.create_connection(("127.0.0.1", stack.port)) as fast, \
            socket.create_connection(("127.0.0.1", stack.port)) as handed_off:
        fast.sendall(b"GET /public/x HTTP/1.1\r\n")  # an unfinished head keeps the connection open
        handed_off.sendall(b"POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")  # a body: aiohttp's
        deadline = asyncio.get_running_loop().time() + 5
        while len(server.fast) + len(server.connections) < 2:
            assert asyncio.get_running_loop().time() < deadline, "the gateway never accepted the connections"
            await asyncio.sleep(0.01)
        assert len(server.connections) == 1 and len(server.fast) == 1
        parsers = {type(handler._parser) for handler in [*server.connections, *server.fast]}
    assert parsers == {http_parser.HttpRequestParserC}


def test_c_parser_is_what_a_fresh_gateway_process_gets():
    """The same check in a new interpreter with this environment, as `python -m gateway serve` would start.

    The child names the parser class web_protocol uses; the assertion is here, where pytest reports it.
    """
    code = ("import json, gateway.ops.server, aiohttp.web_protocol as w; "
            "print(json.dumps(w.HttpRequestParser.__module__ + '.' + w.HttpRequestParser.__qualname__))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == "aiohttp._http_parser.HttpRequestParser"  # the llhttp (C) one


POST = b"POST /public/x HTTP/1.1\r\n" + H
GET = b"GET /public/x HTTP/1.1\r\n" + H
CHUNKED = b"Transfer-Encoding: chunked\r\n\r\n"
REFUSED = {
    "CL and TE": POST + b"Content-Length: 6\r\n" + CHUNKED + b"0\r\n\r\nX",
    "TE and CL": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX",
    "duplicate CL, same": POST + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nX",
    "duplicate CL, different": POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nXY",
    "CL list": POST + b"Content-Length: 1, 1\r\n\r\nX",
    "CL signed": POST + b"Content-Length: +1\r\n\r\nX",
    "CL negative": POST + b"Content-Length: -1\r\n\r\nX",
    "CL hex": POST + b"Content-Length: 0x1\r\n\r\nX",
    "TE not chunked last": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "TE unknown": POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "TE twice": POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "space before colon": POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "TE with vertical tab": POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
    "obs-fold": GET + b"X-A: 1\r\n  folded\r\n\r\n",
    "obs-fold TE": POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "bare LF everywhere": b"GET /public/x HTTP/1.1\nHost: gw.test\n\n",
    "bare LF in headers": b"GET /public/x HTTP/1.1\r\nHost: gw.test\nX-A: 1\r\n\r\n",
    "bare CR": b"GET /public/x HTTP/1.1\r\nHost: gw.test\rX-A: 1\r\n\r\n",
    "NUL in header value": GET + b"X-A: a\x00b\r\n\r\n",
    "bad chunk size": POST + CHUNKED + b"zz\r\nX\r\n0\r\n\r\n",
    "chunk size overflow": POST + CHUNKED + b"f" * 20 + b"\r\nX\r\n0\r\n\r\n",
    "chunk ext with bare LF": POST + CHUNKED + b"1;a\nX\r\n0\r\n\r\n",
    "two Hosts": b"GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "no Host": b"GET /public/x HTTP/1.1\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_ambiguous_framing_is_refused_and_never_forwarded(stack, case):
    answers = await asyncio.to_thread(rawhttp.exchange_many, stack.port, [REFUSED[case]])
    assert answers, case
    assert_refused(answers[0], 400)
    assert answers[0].closed
    assert stack.echo.hits == 0
    assert echoed(await stack.get("/public/next"))["target"] == "/public/next"  # and the gateway is fine


async def test_smuggled_request_in_a_body_stays_body(stack):
    """The classic CL.TE/TE.CL payload, framed unambiguously, is only ever a body to the upstream."""
    inner = b"GET /admin/x HTTP/1.1\r\nHost: gw.test\r\nX-Auth-Scopes: read:admin\r\n\r\n"
    for framing in (b"Content-Length: %d\r\n\r\n" % len(inner) + inner,
                    CHUNKED + b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"):
        answer = await stack.raw(POST + framing)
        assert base64.b64decode(echoed(answer)["body"]) == inner
    assert [r.target for r in stack.echo.seen] == ["/public/x", "/public/x"]


async def test_pipelined_requests_are_each_judged(stack):
    """A second request pipelined behind a public one is authorized on its own (401), not carried along."""
    first = rawhttp.build("POST", "/public/x", body=b"abc")
    second = rawhttp.build("GET", "/admin/x", [("X-Auth-Scopes", "read:admin")])
    answers = await asyncio.to_thread(rawhttp.exchange_many, stack.port, [first, second])
    assert [a.status for a in answers] == [200, 401]
    assert stack.echo.hits == 1


async def test_body_is_reframed_for_the_upstream(stack):
    """Whatever framing the client used (even with Content-Length named in Connection), the upstream gets the bytes."""
    body = b"x=1&y=" + b"z" * 5000
    cases = [
        [("Content-Length", str(len(body)))],
        [("Content-Length", str(len(body))), ("Connection", "content-length")],
        [("Transfer-Encoding", "chunked")],
    ]
    for headers in cases:
        framed = body if headers[0][0] == "Content-Length" else b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
        seen = echoed(await stack.request("POST", "/public/x", headers, framed))
        assert base64.b64decode(seen["body"]) == body, headers
        names = [k.lower() for k, _ in seen["headers"]]
        assert not ("content-length" in names and "transfer-encoding" in names)


async def test_http10_with_transfer_encoding_is_not_a_desync(stack):
    """HTTP/1.0 has no chunked coding: however aiohttp reads it, nothing after it is treated as a second request."""
    smuggled = b"GET /admin/x HTTP/1.1\r\nHost: gw.test\r\n\r\n"
    raw = b"POST /public/x HTTP/1.0\r\n" + H + CHUNKED + b"0\r\n\r\n" + smuggled
    answers = await asyncio.to_thread(rawhttp.exchange_many, stack.port, [raw, b""])
    assert all(a.status != 200 or echoed(a)["target"] == "/public/x" for a in answers)
    assert all(r.target != "/admin/x" for r in stack.echo.seen)
