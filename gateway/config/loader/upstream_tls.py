"""`upstream:` TLS settings for an https:// upstream, turned into one verified `ssl.SSLContext` at load.

Verification is never optional: the context checks the certificate chain
(the system's CAs, or `ca_file`) and the host name (the URL's, or
`server_name`).  `client_cert`/`client_key` add a client certificate for an
upstream that requires mutual TLS.  Every file is read here, so a missing or
malformed one is a `file:line` problem at load, not a failure on the first
request.
"""
from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config.loader.sections import Problems, Section
from gateway.config.model import UpstreamConfig

TLS_KEYS = ("ca_file", "server_name", "client_cert", "client_key")


def read_tls_settings(up: Section, base_dir: Path, problems: Problems) -> dict[str, str | None]:
    """The four TLS keys of an `upstream:` mapping; files resolved against the config's folder and readable."""
    settings: dict[str, str | None] = {}
    for key in ("ca_file", "client_cert", "client_key"):
        path = up.get(key, str)
        if path is None:
            continue
        file = (base_dir / path).resolve()
        try:
            file.read_bytes()
        except OSError as exc:
            problems.add(up.line(key), f"cannot read upstream {key} {str(file)!r}: {exc.strerror}")
            continue
        settings[key] = str(file)
    name = up.get("server_name", str)
    if name is not None:
        try:
            valid = urlsplit(f"//{name}").hostname == name.lower() and not any(c in name for c in " @:/")
        except ValueError:
            valid = False
        if valid:
            settings["server_name"] = name
        else:
            problems.add(up.line("server_name"),
                         f"upstream server_name {name!r} must be a host name like api.internal (no port)")
    if up.has("client_key") and not up.has("client_cert"):
        problems.add(up.line("client_key"), "upstream client_key needs client_cert (the certificate it belongs to)")
    return settings


def with_tls_context(upstream: UpstreamConfig, problems: Problems, line_of) -> UpstreamConfig:
    """`upstream` with its SSLContext when the URL is https://; `line_of(key)` locates a key for problems."""
    given = [key for key in TLS_KEYS if getattr(upstream, key) is not None]
    if not upstream.url.startswith("https://"):
        for key in given:
            problems.add(line_of(key), f"upstream {key} applies only to an https:// upstream, "
                                       f"and {upstream.url!r} is not one")
        return upstream
    try:
        context = ssl.create_default_context(cafile=upstream.ca_file)  # system CAs when None
    except (ssl.SSLError, ValueError) as exc:
        problems.add(line_of("ca_file"), f"upstream ca_file {upstream.ca_file!r} holds no PEM CA certificate "
                                         f"({exc}); give the CA bundle that signed the upstream's certificate")
        return upstream
    if upstream.client_cert is not None:
        try:
            context.load_cert_chain(upstream.client_cert, upstream.client_key)
        except (ssl.SSLError, ValueError) as exc:
            problems.add(line_of("client_cert"),
                         f"upstream client_cert {upstream.client_cert!r} and client_key do not load as a PEM "
                         f"certificate and its private key ({exc}); give both files, unencrypted, matching")
            return upstream
    return dataclasses.replace(upstream, tls=context)
