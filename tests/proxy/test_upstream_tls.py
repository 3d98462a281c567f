"""An https:// upstream: every request leaves over verified TLS, and a failed verification is 502, never plaintext.

Certificates come from trustme (a throwaway CA per test session); the
upstream is the tests' echo upstream served over TLS, so each request it
records says whether it arrived over TLS.
"""
from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
import trustme

from gateway.config.loader import ConfigError, load_config
from tests.support.upstream import EchoUpstream


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tls") / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *names: str, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    """A TLS server context with a certificate for `names`; requiring a client certificate from `client_ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    if client_ca is not None:
        client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
async def tls_upstream(ca):
    server = await EchoUpstream().start(server_context(ca, "127.0.0.1"))
    yield server
    await server.stop()


def upstream_yaml(url: str, **settings: str) -> str:
    """A flow mapping for `upstream:` (config_text writes it after `upstream: `)."""
    return "{" + ", ".join(f"{key}: '{value}'" for key, value in {"url": url, **settings}.items()) + "}"


async def _all_methods(client, bearer) -> list[tuple[str, int, str | None]]:
    """GET, HEAD, POST and a WebSocket through the gateway: (what, status, code when refused)."""
    results = []
    for method, data in (("GET", None), ("HEAD", None), ("POST", b"x" * 3000)):
        async with client.request(method, "/echo/tls?q=1", data=data, headers=bearer()) as answer:
            code = (await answer.json())["code"] if answer.status >= 400 and method != "HEAD" else None
            results.append((method, answer.status, code))
    try:
        async with client.ws_connect("/ws", headers=bearer()) as ws:
            await ws.send_str("over tls?")
            results.append(("WS", 101 if await ws.receive_str() == "echo:over tls?" else 0, None))
    except aiohttp.WSServerHandshakeError:  # refused: ask again by hand to read the gateway's JSON answer
        upgrade = {**bearer(), "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        async with client.get("/ws", headers=upgrade) as answer:
            results.append(("WS", answer.status, (await answer.json())["code"]))
    return results


ALL_THROUGH = [("GET", 200, None), ("HEAD", 200, None), ("POST", 200, None), ("WS", 101, None)]
ALL_TLS_REFUSED = [("GET", 502, "upstream_tls_error"), ("HEAD", 502, None),
                   ("POST", 502, "upstream_tls_error"), ("WS", 502, "upstream_tls_error")]


async def test_get_head_post_and_websocket_all_reach_an_https_upstream_over_tls(gateway_for, tls_upstream,
                                                                                 ca_file, bearer):
    async with gateway_for(upstream_yaml(tls_upstream.url, ca_file=ca_file)) as (_, client):
        assert await _all_methods(client, bearer) == ALL_THROUGH
    assert [(seen.method, seen.tls) for seen in tls_upstream.seen] == [
        ("GET", True), ("HEAD", True), ("POST", True), ("GET", True)]  # the last: the WebSocket upgrade
    assert tls_upstream.seen[2].length == 3000


@pytest.mark.parametrize("trust", ["system CAs", "another CA"])
async def test_an_unverifiable_upstream_certificate_is_502_upstream_tls_error(gateway_for, tls_upstream, bearer,
                                                                              tmp_path, trust):
    settings = {}
    if trust == "another CA":
        settings["ca_file"] = str(tmp_path / "other-ca.pem")
        trustme.CA().cert_pem.write_to_path(settings["ca_file"])
    async with gateway_for(upstream_yaml(tls_upstream.url, **settings)) as (_, client):
        assert await _all_methods(client, bearer) == ALL_TLS_REFUSED
    assert tls_upstream.seen == []  # nothing was sent, in any form


async def test_a_plain_tcp_listener_in_place_of_the_upstream_receives_a_tls_client_hello(gateway_for, ca_file,
                                                                                         bearer):
    first_bytes: list[bytes] = []

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_bytes.append(await reader.read(64))
        writer.close()  # no TLS here: the handshake fails, the request is never sent

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with gateway_for(upstream_yaml(url, ca_file=ca_file)) as (_, client):
            for method, data in (("GET", None), ("DELETE", None), ("HEAD", None), ("POST", b"secret body")):
                async with client.request(method, "/echo/x", data=data, headers=bearer()) as answer:
                    assert answer.status == 502
    finally:
        server.close()
        await server.wait_closed()
    assert len(first_bytes) >= 4
    assert all(chunk[:1] == b"\x16" for chunk in first_bytes), first_bytes  # TLS handshake record: ClientHello
    assert not any(b"HTTP/1.1" in chunk or b"secret" in chunk for chunk in first_bytes)


async def test_server_name_names_the_certificate_when_the_url_holds_an_address(gateway_for, ca, ca_file, bearer):
    upstream = await EchoUpstream().start(server_context(ca, "upstream.internal"))
    try:
        async with gateway_for(upstream_yaml(upstream.url, ca_file=ca_file)) as (_, client):
            assert await _all_methods(client, bearer) == ALL_TLS_REFUSED  # 127.0.0.1 is not in its certificate
        settings = {"ca_file": ca_file, "server_name": "upstream.internal"}
        async with gateway_for(upstream_yaml(upstream.url, **settings)) as (_, client):
            assert await _all_methods(client, bearer) == ALL_THROUGH
        assert all(seen.tls for seen in upstream.seen) and len(upstream.seen) == 4
    finally:
        await upstream.stop()


@pytest.mark.parametrize("key_file", ["separate", "in the certificate file"])
async def test_a_client_certificate_opens_an_upstream_that_requires_mutual_tls(gateway_for, ca, ca_file, bearer,
                                                                               tmp_path, key_file):
    clients_ca = trustme.CA()
    upstream = await EchoUpstream().start(server_context(ca, "127.0.0.1", client_ca=clients_ca))
    client_cert = clients_ca.issue_cert("gateway.internal")
    settings = {"ca_file": ca_file, "client_cert": str(tmp_path / "client.pem")}
    if key_file == "separate":
        client_cert.cert_chain_pems[0].write_to_path(settings["client_cert"])
        settings["client_key"] = str(tmp_path / "client.key")
        client_cert.private_key_pem.write_to_path(settings["client_key"])
    else:
        client_cert.private_key_and_cert_chain_pem.write_to_path(settings["client_cert"])
    try:
        async with gateway_for(upstream_yaml(upstream.url, ca_file=ca_file)) as (_, client):
            assert [status for _, status, _ in await _all_methods(client, bearer)] == [502] * 4  # no certificate
        assert upstream.seen == []
        async with gateway_for(upstream_yaml(upstream.url, **settings)) as (_, client):
            assert await _all_methods(client, bearer) == ALL_THROUGH
        assert len(upstream.seen) == 4
    finally:
        await upstream.stop()


def _load_problems(tmp_path, upstream: str) -> list[str]:
    path = tmp_path / "routes.yaml"
    path.write_text(f"upstream:\n{upstream}\nproviders: []\nroutes:\n  - path: /\n    access: public\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, dotenv=None)
    return info.value.problems


@pytest.mark.parametrize("settings, expected", [
    ("  url: https://a.test\n  ca_file: missing.pem", ":3: cannot read upstream ca_file"),
    ("  url: https://a.test\n  ca_file: not-pem.txt", ":3: upstream ca_file"),
    ("  url: https://a.test\n  client_cert: not-pem.txt", ":3: upstream client_cert"),
    ("  url: https://a.test\n  client_key: not-pem.txt", ":3: upstream client_key needs client_cert"),
    ("  url: https://a.test\n  server_name: 'a b'", ":3: upstream server_name 'a b' must be a host name"),
    ("  url: http://a.test\n  ca_file: not-pem.txt", ":3: upstream ca_file applies only to an https:// upstream"),
])
def test_tls_settings_are_checked_at_load_with_their_line(tmp_path, settings, expected):
    (tmp_path / "not-pem.txt").write_text("not a certificate\n")
    found = _load_problems(tmp_path, settings)
    assert any(expected in problem for problem in found), found


def test_an_https_upstream_gets_one_verifying_context_at_load(tmp_path, ca_file):
    path = tmp_path / "routes.yaml"
    path.write_text(f"upstream: {{url: 'https://a.test', ca_file: '{ca_file}'}}\nproviders: []\n"
                    "routes:\n  - path: /\n    access: public\n")
    context = load_config(path, dotenv=None).upstream.tls
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
