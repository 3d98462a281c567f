"""Every answer the gateway gives on its own behalf: JSON bodies with a code and a fix.

401/403 bodies keep the Auth0 tutorial's `{"code", "description"}` shape and
carry RFC 6750 `WWW-Authenticate` challenges.
"""
from __future__ import annotations

import json

from aiohttp import web

# The Server header of every answer the gateway makes itself (and of forwarded answers whose upstream
# sent none): no product version to look up vulnerabilities by.  aiohttp would add its own, with versions.
SERVER = "gateway"


class Rejection(Exception):
    """A request the gateway answers itself instead of forwarding."""

    def __init__(self, status: int, code: str, description: str,
                 headers: dict[str, str] | None = None, scopes: tuple[str, ...] = ()):
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.headers = headers or {}
        self.scopes = scopes

    def response(self, realm: str) -> web.Response:
        headers = {"Server": SERVER, **self.headers}
        if self.status == 401 or self.code == "insufficient_scope":
            headers["WWW-Authenticate"] = self._challenge(realm)
        body = json.dumps({"code": self.code, "description": self.description}).encode()
        return web.Response(status=self.status, body=body, headers=headers,
                            content_type="application/json")

    def _challenge(self, realm: str) -> str:
        if self.code == "authorization_header_missing":
            return f'Bearer realm="{_quoted(realm)}"'
        error = "insufficient_scope" if self.status == 403 else "invalid_token"
        challenge = (f'Bearer realm="{_quoted(realm)}", error="{error}", '
                     f'error_description="{_quoted(self.description)}"')
        if self.scopes:
            challenge += f', scope="{_quoted(" ".join(self.scopes))}"'
        return challenge


def _quoted(text: str) -> str:
    """Keep a description safe inside a quoted-string (RFC 9110 §5.6.4)."""
    return "".join(c for c in text if c.isprintable() and c not in '"\\' and ord(c) < 127)


def unauthorized(code: str, description: str) -> Rejection:
    return Rejection(401, code, description)


def missing_token() -> Rejection:
    return unauthorized("authorization_header_missing",
                        "Authorization header is expected: send 'Authorization: Bearer <token>'")


def insufficient_scope(description: str, scopes: tuple[str, ...]) -> Rejection:
    return Rejection(403, "insufficient_scope", description, scopes=scopes)


def csrf_origin_mismatch(header: str | None) -> Rejection:
    """An unsafe request with a cookie token whose Origin (or Referer) is not one the route allows."""
    shown = f"its {header} is not one of this route's csrf_origins" if header else "it has neither Origin nor Referer"
    return Rejection(403, "csrf_origin_mismatch",
                     f"this route reads its token from a cookie, so unsafe requests must come from an allowed origin; "
                     f"{shown}")


def bad_request(code: str, description: str) -> Rejection:
    return Rejection(400, code, description)


def not_found() -> Rejection:
    return Rejection(404, "not_found", "no route matches this path; routes are listed in routes.yaml")


def method_not_allowed(allow: tuple[str, ...]) -> Rejection:
    return Rejection(405, "method_not_allowed", "this route does not accept that method",
                     {"Allow": ", ".join(allow)})


def keys_unavailable(provider: str) -> Rejection:
    return Rejection(503, "jwks_unavailable",
                     f"signing keys of provider {provider!r} could not be fetched yet; "
                     "the gateway keeps retrying, check that the identity provider is reachable",
                     {"Retry-After": "5"})


def upstream_unavailable() -> Rejection:
    return Rejection(502, "upstream_unavailable",
                     "the upstream app refused or dropped the connection; check that it is running")


def upstream_tls_error() -> Rejection:
    return Rejection(502, "upstream_tls_error",
                     "the TLS connection to the upstream failed: its certificate did not verify, or the "
                     "handshake was refused (the gateway never falls back to plain HTTP); set upstream.ca_file "
                     "to the CA that signed its certificate, upstream.server_name to the name in it, and "
                     "upstream.client_cert/client_key if it requires a client certificate")


def upstream_timeout() -> Rejection:
    return Rejection(504, "upstream_timeout", "the upstream app did not answer in time")


def ambiguous_token(places: str) -> Rejection:
    return Rejection(400, "invalid_request",
                     f"a token was sent in {places}; send exactly one token in one place (RFC 6750 §2)")


def payload_too_large(limit: int) -> Rejection:
    return Rejection(413, "payload_too_large", f"the request body is larger than the limit of {limit} bytes")


def request_timeout(seconds: float) -> Rejection:
    return Rejection(408, "request_timeout", f"the client sent no request body bytes for {seconds:g} seconds")


def expectation_failed(expect: str) -> Rejection:
    return Rejection(417, "expectation_failed",
                     f"Expect: {expect[:40]!r} is not supported; only '100-continue' (HTTP/1.1) is")


def request_line_too_long(limit: int) -> Rejection:
    return Rejection(414, "uri_too_long", f"the request line is longer than {limit} bytes")


def headers_too_large(detail: str) -> Rejection:
    return Rejection(431, "request_header_fields_too_large", detail)
