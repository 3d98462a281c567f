"""The `tls:` section, and the check of its files that load time and every rotation share.

A certificate pair is checked with `cryptography` before anything serves
it: every file readable, PEM, the key matching the leaf, the leaf not
expired.  `--tls-cert`/`--tls-key` (or GATEWAY_TLS_CERT/GATEWAY_TLS_KEY)
replace the file's pair, or turn TLS on with defaults when there is no
section.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.config.loader.sections import Problems, Section
from gateway.config.model import CLIENT_CERT_MODES, TLS_VERSIONS, TlsConfig

TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_certs", "min_version")


class TlsFileError(Exception):
    """One of the files is unusable; `setting` names which (cert_file, key_file, client_ca_file)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class TlsMaterial:
    """What was found in a usable set of files (for logs, the expiry metric and `check`)."""

    not_after: float  # the leaf's expiry, epoch seconds
    serial: int
    subject: str


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileError(setting, f"cannot read {setting} {path!r}: {exc.strerror}") from None


def _certificates(path: str, setting: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(_read(path, setting))
    except ValueError:
        certificates = []
    if not certificates:
        raise TlsFileError(setting, f"{setting} {path!r} holds no PEM certificate "
                                    "(expected '-----BEGIN CERTIFICATE-----' blocks)")
    return certificates


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def read_tls_files(cert_file: str, key_file: str, client_ca_file: str | None,
                   now: float | None = None) -> TlsMaterial:
    """Check a certificate pair (and client CA) as a TLS server would use them; raises TlsFileError."""
    leaf = _certificates(cert_file, "cert_file")[0]
    try:
        key = serialization.load_pem_private_key(_read(key_file, "key_file"), password=None)
    except TypeError:
        raise TlsFileError("key_file", f"key_file {key_file!r} is encrypted; give the key without a passphrase "
                                       "(keep the file readable by the gateway only)") from None
    except ValueError:
        raise TlsFileError("key_file", f"key_file {key_file!r} holds no PEM private key "
                                       "(expected '-----BEGIN PRIVATE KEY-----' or an RSA/EC key block)") from None
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise TlsFileError("key_file", f"key_file {key_file!r} does not match the certificate in cert_file "
                                       f"{cert_file!r} (the first certificate must be the one for this key)")
    not_after = leaf.not_valid_after_utc.timestamp()
    if not_after <= (time.time() if now is None else now):
        raise TlsFileError("cert_file", f"the certificate in cert_file {cert_file!r} expired at "
                                        f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it")
    if client_ca_file is not None:
        _certificates(client_ca_file, "client_ca_file")
    return TlsMaterial(not_after, leaf.serial_number, leaf.subject.rfc4514_string())


def read_tls(top: Section, problems: Problems, base_dir: Path,
             cert_override: str | None = None, key_override: str | None = None) -> TlsConfig | None:
    """`tls:` with its files checked; None when neither the section nor the overrides ask for TLS."""
    data = top.get("tls", dict)
    line = top.line("tls")
    if (cert_override is None) != (key_override is None):
        problems.add(line, "--tls-cert and --tls-key (GATEWAY_TLS_CERT, GATEWAY_TLS_KEY) go together: give both")
        return None
    if data is None and cert_override is None:
        return None
    section = Section(data, "tls", problems, TLS_KEYS) if data is not None else None

    def path(key: str, required: bool) -> str | None:
        value = section.get(key, str, required=required) if section is not None else None
        if value == "":  # never read as "no file": that would serve plain http where https was asked for
            problems.add(section.line(key), f"tls {key} must not be empty; give the file's path")
        return str((base_dir / value).resolve()) if value else None

    if cert_override is not None:
        cert_file, key_file = str(Path(cert_override).resolve()), str(Path(key_override).resolve())
    else:
        cert_file, key_file = path("cert_file", True), path("key_file", True)
    client_ca_file = path("client_ca_file", False)
    client_certs = section.get("client_certs", str, "none") if section is not None else "none"
    if client_certs not in CLIENT_CERT_MODES:
        problems.add(section.line("client_certs"), f"tls client_certs must be one of {', '.join(CLIENT_CERT_MODES)}, "
                                                   f"not {client_certs!r}")
    elif client_certs != "none" and client_ca_file is None:
        problems.add(section.line("client_certs"), f"tls client_certs: {client_certs} needs client_ca_file, "
                                                   "the CA that signs the clients' certificates")
    elif client_certs == "none" and client_ca_file is not None:
        problems.add(section.line("client_ca_file"), "tls client_ca_file is set but client_certs is none, so no "
                                                     "client is asked for a certificate; set client_certs: optional "
                                                     "or required, or remove client_ca_file")
    min_version = section.get("min_version", str, "TLSv1.2") if section is not None else "TLSv1.2"
    if min_version not in TLS_VERSIONS:
        problems.add(section.line("min_version"), f"tls min_version must be {' or '.join(TLS_VERSIONS)}, "
                                                  f"not {min_version!r}")
    if cert_file is None or key_file is None:
        return None
    try:
        material = read_tls_files(cert_file, key_file, client_ca_file)
    except TlsFileError as exc:
        from_section = section is not None and (cert_override is None or exc.setting == "client_ca_file")
        problems.add(section.line(exc.setting) if from_section else line, f"tls: {exc}")
        return None
    return TlsConfig(cert_file, key_file, client_ca_file, client_certs, min_version, material.not_after,
                     data.line if data is not None else line)
