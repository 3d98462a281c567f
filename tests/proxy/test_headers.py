"""Headers through the real gateway: hop-by-hop removal both ways, repeats kept, forwarding chain, Host, exact targets."""
from __future__ import annotations

import pytest

from tests.support import rawhttp

HOP_BY_HOP_SENT = [
    ("Connection", "keep-alive, X-Auth-Subject, X-Client-Private"),
    ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Trailer", "X-Sum"), ("Upgrade", "h2c"),
    ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("Proxy-Connection", "keep-alive"),
    ("X-Client-Private", "named in Connection"), ("X-End-To-End", "kept"),
]


async def test_hop_by_hop_request_headers_are_removed_but_not_the_gateways_own(gateway_for, echo_upstream, bearer):
    async with gateway_for(echo_upstream.url) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/echo/hop", HOP_BY_HOP_SENT + list(bearer().items())))
    assert answer.status == 200
    seen = echo_upstream.last
    for name in ("connection", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization",
                 "proxy-connection", "x-client-private"):
        assert name not in seen.names(), name
    assert seen.all("X-End-To-End") == ["kept"]
    # `Connection: X-Auth-Subject` cannot make the gateway drop what it adds after that step
    assert seen.all("X-Auth-Subject") == ["alice"]


async def test_hop_by_hop_response_headers_are_removed(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/hop"))
    names = {k.lower() for k, _ in answer.headers}
    assert answer.status == 200 and answer.body == b"hop"
    for name in ("x-upstream-private", "keep-alive", "proxy-authenticate", "trailer", "upgrade", "proxy-connection"):
        assert name not in names, name
    assert answer.header("X-End-To-End") == "kept"
    assert answer.header("Connection") in (None, "keep-alive")  # the gateway's own, if any


async def test_repeated_set_cookie_survive_in_order(gateway_for, echo_upstream):
    async with gateway_for(echo_upstream.url) as (_, client):
        async with client.get("/cookies") as r:
            assert r.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly", "c=3, with comma; Secure"]


SPOOFED = [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https"),
           ("X-Forwarded-Host", "public.example"), ("Forwarded", "for=203.0.113.9;proto=https;host=public.example")]


async def test_forwarding_headers_from_an_untrusted_peer_are_replaced(gateway_for, echo_upstream):
    # 10.0.0.0/8 is trusted, but the test client connects from 127.0.0.1
    async with gateway_for(echo_upstream.url, extra="clients:\n  trusted_proxies: [10.0.0.0/8]") as (gw, _):
        await rawhttp.send(gw.port, rawhttp.build("GET", "/status/200", SPOOFED + [("X_Forwarded_For", "1.2.3.4")]))
    seen = echo_upstream.last
    assert seen.all("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.all("X-Forwarded-Proto") == ["http"]
    assert seen.all("X-Forwarded-Host") == [rawhttp.HOST]
    assert seen.all("Forwarded") == [f"for=127.0.0.1;proto=http;host={rawhttp.HOST}"]
    assert "x_forwarded_for" not in seen.names()


async def test_forwarding_chain_of_a_trusted_proxy_is_extended(gateway_for, echo_upstream):
    extra = "clients:\n  trusted_proxies: [192.0.2.0/24, 127.0.0.1]"
    async with gateway_for(echo_upstream.url, extra=extra) as (gw, _):
        await rawhttp.send(gw.port, rawhttp.build("GET", "/status/200", SPOOFED, host="127.0.0.1:8443"))
    seen = echo_upstream.last
    assert seen.all("X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert seen.all("X-Forwarded-Proto") == ["https"]  # what the first proxy saw
    assert seen.all("X-Forwarded-Host") == ["public.example"]
    assert seen.all("Forwarded") == ['for=203.0.113.9;proto=https;host=public.example, '
                                     'for=127.0.0.1;proto=http;host="127.0.0.1:8443"']


@pytest.mark.parametrize("setting, expected", [
    ("", rawhttp.HOST),  # default: pass
    ("  host: pass\n", rawhttp.HOST),
    ("  host: upstream\n", None),  # the upstream URL's authority
    ("  host: api.internal:8443\n", "api.internal:8443"),
])
async def test_host_is_passed_or_rewritten(gateway_for, echo_upstream, setting, expected):
    text_upstream = f"\n  url: {echo_upstream.url}\n{setting}" if setting else echo_upstream.url
    async with gateway_for(text_upstream) as (gw, _):
        await rawhttp.send(gw.port, rawhttp.build("GET", "/status/200"))
    seen = echo_upstream.last
    assert seen.all("Host") == [expected or echo_upstream.url.removeprefix("http://")]
    assert seen.all("X-Forwarded-Host") == [rawhttp.HOST]  # the client's Host, whichever is sent


@pytest.mark.parametrize("target", [
    "/echo/q?x=%2F&y=1&y=2&z=%7e&plus=a+b&empty=&flag&sp=%20&utf=%E2%9C%93",
    "/echo/q?odd=%zz&semi=a;b&slash=/a/b?c&eq=a=b&amp=%26",
    "/echo/a%20b/%C3%A9t%C3%A9/c!$&'()*+,=:@?k=v",
])
async def test_path_and_query_reach_the_upstream_byte_for_byte(gateway_for, echo_upstream, bearer, target):
    async with gateway_for(echo_upstream.url) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", target, list(bearer().items())))
    assert answer.status == 200, answer.body
    assert echo_upstream.last.target == target


async def test_a_bare_question_mark_is_the_one_documented_difference(gateway_for, echo_upstream, bearer):
    """yarl cannot spell an empty-but-present query, so `/p?` goes upstream as `/p` (docs/proxy.md)."""
    async with gateway_for(echo_upstream.url) as (gw, _):
        answer = await rawhttp.send(gw.port, rawhttp.build("GET", "/echo/q?", list(bearer().items())))
    assert answer.status == 200 and echo_upstream.last.target == "/echo/q"


def test_forwarded_element_quotes_ipv6_and_ports_and_trust_sees_through_mapped_addresses():
    from multidict import CIMultiDict, CIMultiDictProxy

    from gateway.proxy.forwarded import forwarding_headers, is_trusted, parse_network

    incoming = CIMultiDictProxy(CIMultiDict({"Host": "api.example:8443"}))
    assert dict(forwarding_headers(incoming, "2001:db8::7", "https", trusted=False)) == {
        "X-Forwarded-For": "2001:db8::7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example:8443",
        "Forwarded": 'for="[2001:db8::7]";proto=https;host="api.example:8443"'}
    networks = [parse_network("10.0.0.0/8"), parse_network("2001:db8::/32")]
    assert is_trusted("::ffff:10.1.2.3", networks) and is_trusted("2001:db8::7", networks)
    assert not is_trusted("11.0.0.1", networks) and not is_trusted(None, networks) and not is_trusted("x", networks)
