"""TLS test fixtures: certificates from the gateway's own devcerts, checked by OpenSSL on both sides.

`certs` writes a CA, a server pair for 127.0.0.1 and client certificates into the
test's folder; `tls_gateway` starts an in-process gateway whose `tls:` section
points at them, in front of the shared echo upstream (tests/support/upstream.py).
"""
from __future__ import annotations

import asyncio
import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from gateway.tools.devcerts import Issued, issue, make_ca, write_pair
from tests.support.config import config_text, provider_yaml
from tests.support.gateway import running_gateway
from tests.support.keys import claims

ROUTES = """\
  - path: /ws
    access: authenticated
  - path: /echo/user/**
    access: authenticated
  - path: /stream-echo
    access: public
  - path: /**
    access: public
"""


@dataclass
class Certs:
    folder: Path
    ca: Issued
    server: Issued
    client: Issued  # signed by the CA the gateway trusts
    other_client: Issued  # signed by the same CA: a different certificate
    stranger: Issued  # signed by a CA the gateway does not trust
    stranger_ca: Issued

    def client_files(self, issued: Issued, name: str) -> tuple[Path, Path]:
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}-key.pem"
        if not cert.exists():
            write_pair(issued, cert, key)
        return cert, key

    def context(self, client: Issued | None = None) -> ssl.SSLContext:
        """A client context trusting the CA, presenting `client` if given."""
        context = ssl.create_default_context(cafile=str(self.folder / "ca.pem"))
        context.set_alpn_protocols(["http/1.1"])
        if client is not None:
            name = {id(self.client): "client", id(self.other_client): "other", id(self.stranger): "stranger"}[id(client)]
            context.load_cert_chain(*self.client_files(client, name))
        return context

    def rotate(self) -> Issued:
        """A new server pair written over the old files, as a renewal would."""
        self.server = issue(self.ca, "localhost", server_names=("127.0.0.1",))
        write_pair(self.server, self.folder / "server.pem", self.folder / "server-key.pem")
        return self.server


@pytest.fixture(scope="session")
def issued():
    ca, stranger_ca = make_ca(), make_ca("stranger CA")
    return ca, issue(ca, "dev-client", client=True), issue(ca, "other-client", client=True), \
        issue(stranger_ca, "stranger", client=True), stranger_ca


@pytest.fixture
def certs(tmp_path, issued) -> Certs:
    ca, client, other, stranger, stranger_ca = issued
    server = issue(ca, "localhost", server_names=("127.0.0.1",))
    write_pair(server, tmp_path / "server.pem", tmp_path / "server-key.pem")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    return Certs(tmp_path, ca, server, client, other, stranger, stranger_ca)


def tls_section(client_certs: str = "none", client_ca: str = "ca.pem") -> str:
    lines = ["tls:", "  cert_file: server.pem", "  key_file: server-key.pem"]
    if client_certs != "none":
        lines += [f"  client_ca_file: {client_ca}", f"  client_certs: {client_certs}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def tls_gateway(provider, echo_upstream, certs):
    """`async with tls_gateway(client_certs=..., provider_extra=...) as gw`: an https gateway on 127.0.0.1."""

    @asynccontextmanager
    async def start(client_certs: str = "none", provider_extra: str = "", tls: bool = True, extra: str = "",
                    client_ca: str = "ca.pem"):
        section = tls_section(client_certs, client_ca) if tls else ""
        text = config_text(echo_upstream.url, provider_yaml(provider.jwks_uri, extra=provider_extra), ROUTES,
                           section + "reload:\n  interval: 0.05\n" + extra)
        async with running_gateway(text, base_dir=certs.folder) as gw:
            yield gw

    return start


@asynccontextmanager
async def session(gw, context: ssl.SSLContext | None, limit: int = 10):
    """A client session for the gateway: https with `context`, plain http when it is None."""
    scheme = "http" if context is None else "https"
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False, limit=limit)
    async with aiohttp.ClientSession(f"{scheme}://127.0.0.1:{gw.port}", connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


async def served_certificate(port: int, context: ssl.SSLContext) -> x509.Certificate:
    """The certificate a fresh handshake gets (and the connection closed again)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=context), 5)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der)


@pytest.fixture
def bound_token(rsa_key):
    """`bound_token(issued)`: a token whose cnf binds it to that certificate (and `bound_token(None)`: unbound)."""
    from gateway.auth.binding import certificate_thumbprint
    from cryptography.hazmat.primitives import serialization

    def mint(issued: Issued | None, **extra) -> str:
        if issued is not None:
            der = issued.certificate.public_bytes(serialization.Encoding.DER)
            extra["cnf"] = {"x5t#S256": certificate_thumbprint(der)}
        return rsa_key.sign(claims(**extra))

    return mint
