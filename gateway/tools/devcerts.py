"""`gateway devcerts`: a local CA, a server certificate for localhost and a client certificate.

For trying TLS, client certificates and certificate-bound tokens on one
machine without openssl: everything is made with `cryptography`.  Anyone who
can read the folder can impersonate the gateway or the client, so it is for
development only (the folder is git-ignored, the keys are 0600).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.auth.binding import X5T_S256, certificate_thumbprint

DEFAULT_DIR = ".devcerts"
VALIDITY = datetime.timedelta(days=90)  # like an ACME certificate: rotation is part of the exercise
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jwt-auth-gateway development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key, not_before: datetime.datetime,
             validity: datetime.timedelta) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(_name(subject)).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_before + validity)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)  # some clock skew


def make_ca(name: str = "gateway development CA") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (_builder(name, _name(name), key, _now(), datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .sign(key, hashes.SHA256()))
    return Issued(certificate, key)


def issue(ca: Issued, common_name: str, *, server_names: tuple[str, ...] = (), client: bool = False,
          validity: datetime.timedelta = VALIDITY, not_before: datetime.datetime | None = None) -> Issued:
    """A leaf signed by `ca`: a server certificate for `server_names`, or a client certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(common_name, ca.certificate.subject, key, not_before or _now(), validity)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                     else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if server_names:
        alternatives = []
        for name in server_names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def write_pair(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """Certificate and key, each replaced atomically (a running gateway never reads half a file)."""
    _replace(cert_path, issued.cert_pem, 0o644)
    _replace(key_path, issued.key_pem, 0o600)


def _replace(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def make_devcerts(folder: str | Path = DEFAULT_DIR) -> list[Path]:
    """ca.pem (+ca-key.pem), server.pem/server-key.pem for localhost, client.pem/client-key.pem."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = make_ca()
    server = issue(ca, "localhost", server_names=SERVER_NAMES)
    client = issue(ca, "dev-client", client=True)
    write_pair(ca, folder / "ca.pem", folder / "ca-key.pem")
    write_pair(server, folder / "server.pem", folder / "server-key.pem")
    write_pair(client, folder / "client.pem", folder / "client-key.pem")
    return [folder / name for name in ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")]


def certificate_confirmation(cert_path: str | Path) -> dict:
    """The `cnf` claim binding a token to the (first) certificate in a PEM file (RFC 8705 §3.1)."""
    certificates = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())
    return {X5T_S256: certificate_thumbprint(certificates[0].public_bytes(serialization.Encoding.DER))}
