"""The https listener end to end: real handshakes, client certificates, plain http, wss, rotation."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time

import aiohttp
import pytest
from aiohttp import WSMsgType
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.auth.binding import certificate_thumbprint
from gateway.tools.devcerts import Issued, issue, write_pair
from tests.support.tls import served_certificate, session


def thumbprint(issued: Issued) -> str:
    return certificate_thumbprint(issued.certificate.public_bytes(serialization.Encoding.DER))


async def test_https_with_the_ca_reaches_the_upstream_over_http11(tls_gateway, certs, echo_upstream):
    async with tls_gateway() as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port, ssl=certs.context())
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.selected_alpn_protocol() == "http/1.1"
        assert ssl_object.getpeercert(binary_form=True) == certs.server.certificate.public_bytes(
            serialization.Encoding.DER)
        writer.close()
        async with session(gw, certs.context()) as client, client.get("/echo/public?x=1") as response:
            assert response.status == 200
    assert echo_upstream.last.header("X-Forwarded-Proto") == "https"
    assert echo_upstream.last.header("X-Auth-Client-Cert-Sha256") is None


async def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(tls_gateway, certs):
    async with tls_gateway() as gw, session(gw, ssl.create_default_context()) as client:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await client.get("/echo/public")


async def test_wss_relays_frames(tls_gateway, certs, echo_upstream, rsa_key):
    from tests.support.keys import claims

    token = rsa_key.sign(claims())
    async with tls_gateway() as gw, session(gw, certs.context()) as client:
        async with client.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send_str("hello")
            message = await asyncio.wait_for(ws.receive(), 5)
            assert (message.type, message.data) == (WSMsgType.TEXT, "echo:hello")
    assert echo_upstream.last.header("X-Auth-Subject") == "alice"


async def test_a_streamed_body_goes_both_ways_intact(tls_gateway, certs):
    chunks = [bytes([n]) * 65536 for n in range(64)]  # 4 MiB, sent as it is produced

    async def produce():
        for chunk in chunks:
            yield chunk

    async with tls_gateway() as gw, session(gw, certs.context()) as client:
        async with client.post("/stream-echo", data=produce()) as response:
            assert response.status == 200 and response.headers.get("Transfer-Encoding") == "chunked"
            received = hashlib.sha256()
            async for piece in response.content.iter_any():
                received.update(piece)
    assert received.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()


async def _plain_request(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo/public HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)  # the gateway closes: no hang
    writer.close()
    return answer


async def test_plain_http_to_the_tls_port_gets_a_400_and_is_logged_once(tls_gateway, echo_upstream, caplog):
    caplog.set_level(logging.WARNING, "gateway.tls")
    async with tls_gateway() as gw:
        first, second = await _plain_request(gw.port), await _plain_request(gw.port)
    assert first.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in first
    assert b"https://" in first and first == second
    notes = [r for r in caplog.records if "plain http sent to the https port" in r.getMessage()]
    assert len(notes) == 1
    assert echo_upstream.seen == []


async def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(tls_gateway):
    async with tls_gateway(extra="clients:\n  idle_timeout: 0.3\n") as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_client_certs_none_asks_for_none(tls_gateway, certs, echo_upstream):
    async with tls_gateway("none") as gw, session(gw, certs.context(certs.client)) as client:
        async with client.get("/echo/public") as response:
            assert response.status == 200
    assert echo_upstream.last.header("X-Auth-Client-Cert-Sha256") is None


async def test_client_certs_optional_forwards_the_verified_thumbprint(tls_gateway, certs, echo_upstream):
    async with tls_gateway("optional") as gw:
        async with session(gw, certs.context()) as client, client.get("/echo/public") as response:
            assert response.status == 200
        assert echo_upstream.last.header("X-Auth-Client-Cert-Sha256") is None
        forged = {"X-Auth-Client-Cert-Sha256": thumbprint(certs.client), "x_auth_client_cert_sha256": "forged"}
        async with session(gw, certs.context(certs.other_client)) as client, \
                client.get("/echo/public", headers=forged) as response:
            assert response.status == 200
        assert echo_upstream.last.all("X-Auth-Client-Cert-Sha256") == [thumbprint(certs.other_client)]
        assert "x_auth_client_cert_sha256" not in echo_upstream.last.names()
        async with session(gw, certs.context(certs.stranger)) as client:
            with pytest.raises(aiohttp.ClientError):  # a certificate from an untrusted CA fails the handshake
                async with client.get("/echo/public") as response:
                    await response.read()


async def test_client_certs_required_refuses_a_handshake_without_one(tls_gateway, certs, echo_upstream):
    async with tls_gateway("required") as gw:
        async with session(gw, certs.context()) as client:
            with pytest.raises(aiohttp.ClientError):
                async with client.get("/echo/public") as response:
                    await response.read()
        async with session(gw, certs.context(certs.client)) as client, client.get("/echo/public") as response:
            assert response.status == 200
    assert [seen.header("X-Auth-Client-Cert-Sha256") for seen in echo_upstream.seen] == [thumbprint(certs.client)]


async def _until(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        await asyncio.sleep(0.02)


async def test_rotation_serves_the_new_pair_to_new_handshakes_and_keeps_open_connections(
        tls_gateway, certs, echo_upstream):
    context = certs.context()
    old_serial = certs.server.certificate.serial_number
    async with tls_gateway() as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port, ssl=context)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # in flight on the old pair
        await asyncio.wait_for(echo_upstream.controls.held.wait(), 5)
        new = certs.rotate()

        async def new_pair_served():
            return (await served_certificate(gw.port, context)).serial_number == new.certificate.serial_number

        await _until(new_pair_served, "the new certificate was not served")
        scraped = dict(line.rsplit(" ", 1) for line in gw.metrics.render().decode().splitlines()
                       if not line.startswith("#"))
        assert float(scraped["gateway_tls_certificate_expiry_timestamp_seconds"]) == \
            new.certificate.not_valid_after_utc.timestamp()
        echo_upstream.controls.release.set()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert x509.load_der_x509_certificate(der).serial_number == old_serial
        writer.close()


async def test_a_broken_new_pair_is_refused_and_the_old_one_keeps_serving(tls_gateway, certs, caplog):
    caplog.set_level(logging.ERROR, "gateway.tls")
    context = certs.context()
    serving = certs.server.certificate.serial_number
    async with tls_gateway() as gw:
        other = issue(certs.ca, "localhost", server_names=("127.0.0.1",))
        write_pair(other, certs.folder / "unused.pem", certs.folder / "server-key.pem")  # key of another cert

        async def refused():
            return [r for r in caplog.records if "rotation refused" in r.getMessage()]

        notes = await _until(refused, "the mismatched pair was not refused")
        assert "does not match the certificate" in notes[0].getMessage()
        assert (await served_certificate(gw.port, context)).serial_number == serving
        caplog.clear()
        (certs.folder / "server.pem").write_text("not a certificate\n")
        await _until(refused, "the unparsable certificate was not refused")
        assert (await served_certificate(gw.port, context)).serial_number == serving
        async with session(gw, context) as client, client.get("/echo/public") as response:
            assert response.status == 200


async def test_a_replaced_client_ca_decides_the_next_handshakes(tls_gateway, certs, echo_upstream):
    (certs.folder / "clients-ca.pem").write_bytes(certs.ca.cert_pem)
    async with tls_gateway("required", client_ca="clients-ca.pem") as gw:
        async with session(gw, certs.context(certs.client)) as client, client.get("/echo/public") as response:
            assert response.status == 200
        (certs.folder / "clients-ca.pem").write_bytes(certs.stranger_ca.cert_pem)  # trust only the stranger's CA

        async def stranger_accepted():
            try:
                async with session(gw, certs.context(certs.stranger)) as client, \
                        client.get("/echo/public") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await _until(stranger_accepted, "a certificate of the new client CA was not accepted")
        async with session(gw, certs.context(certs.client)) as client:
            with pytest.raises(aiohttp.ClientError):  # the replaced CA is trusted no more
                async with client.get("/echo/public") as response:
                    await response.read()


def test_a_pair_written_in_two_steps_is_taken_without_an_error_and_a_bad_one_refused_once(certs, caplog):
    """poll() by hand: a renewal that writes the certificate, then the key, is not ready yet, not an error."""
    from gateway.config.model import TlsConfig
    from gateway.ops.tls_listener import CertificateRotation

    caplog.set_level(logging.INFO, "gateway.tls")
    tls = TlsConfig(str(certs.folder / "server.pem"), str(certs.folder / "server-key.pem"))
    expiries = []
    rotation = CertificateRotation(tls, lambda material: expiries.append(material.not_after))
    new = issue(certs.ca, "localhost", server_names=("127.0.0.1",))
    (certs.folder / "server.pem").write_bytes(new.cert_pem)
    assert rotation.poll() is False  # the old key does not match the new certificate: wait
    (certs.folder / "server-key.pem").write_bytes(new.key_pem)
    assert rotation.poll() is True and rotation.current.material.serial == new.certificate.serial_number
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(expiries) == 2
    (certs.folder / "server-key.pem").write_bytes(certs.server.key_pem)  # a key of another certificate
    assert [rotation.poll() for _ in range(4)] == [False] * 4
    refusals = [r for r in caplog.records if "rotation refused" in r.getMessage()]
    assert len(refusals) == 1 and "does not match" in refusals[0].getMessage()
    assert rotation.current.material.serial == new.certificate.serial_number
