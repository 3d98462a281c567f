"""Every answer the gateway gives on its own behalf: JSON bodies with a code and a fix.

401/403 bodies keep the Auth0 tutorial's `{"code", "description"}` shape and
carry RFC 6750 `WWW-Authenticate` challenges.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

BEARER, DPOP = "Bearer", "DPoP"  # authorization schemes (RFC 6750, RFC 9449)


@dataclass(frozen=True)
class Challenges:
    """The schemes a route accepts, each named by a challenge in its 401s and 403s."""

    bearer: bool = True
    dpop_algs: tuple[str, ...] = ()  # non-empty: DPoP is accepted, with proofs signed by these

    def schemes(self) -> tuple[str, ...]:
        return ((BEARER,) if self.bearer else ()) + ((DPOP,) if self.dpop_algs else ())


BEARER_ONLY = Challenges()

# The Server header of every answer the gateway makes itself (and of forwarded answers whose upstream
# sent none): no product version to look up vulnerabilities by.  aiohttp would add its own, with versions.
SERVER = "gateway"


class Rejection(Exception):
    """A request the gateway answers itself instead of forwarding."""

    def __init__(self, status: int, code: str, description: str,
                 headers: dict[str, str] | None = None, scopes: tuple[str, ...] = (),
                 challenge_error: str | None = None):
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.headers = headers or {}
        self.scopes = scopes
        self.challenge_error = challenge_error  # the challenge's error= when it is not invalid_token

    def response(self, realm: str, challenges: Challenges = BEARER_ONLY, scheme: str | None = BEARER) -> web.Response:
        """`scheme`: the one the request's token came with (None: no token was read); its challenge carries
        the error (RFC 9449 §7.1), alongside the challenges of every scheme the route accepts."""
        headers = CIMultiDict({"Server": SERVER, **self.headers})
        if self.status == 401 or self.code == "insufficient_scope":
            for challenge in self._challenges(realm, challenges, scheme):
                headers.add("WWW-Authenticate", challenge)
        body = json.dumps({"code": self.code, "description": self.description}).encode()
        return web.Response(status=self.status, body=body, headers=headers,
                            content_type="application/json")

    def _challenges(self, realm: str, challenges: Challenges, scheme: str | None) -> list[str]:
        accepted = challenges.schemes()
        if scheme is None:
            scheme = accepted[0] if accepted else BEARER
        schemes = [name for name in (BEARER, DPOP) if name in accepted or name == scheme]
        result = []
        for name in schemes:
            params = [f'realm="{_quoted(realm)}"']
            if name == scheme and self.code != "authorization_header_missing":
                error = self.challenge_error or ("insufficient_scope" if self.status == 403 else "invalid_token")
                params += [f'error="{error}"', f'error_description="{_quoted(self.description)}"']
                if self.scopes:
                    params.append(f'scope="{_quoted(" ".join(self.scopes))}"')
            if name == DPOP and challenges.dpop_algs:
                params.append(f'algs="{" ".join(challenges.dpop_algs)}"')
            result.append(f"{name} " + ", ".join(params))
        return result


def _quoted(text: str) -> str:
    """Keep a description safe inside a quoted-string (RFC 9110 §5.6.4)."""
    return "".join(c for c in text if c.isprintable() and c not in '"\\' and ord(c) < 127)


def unauthorized(code: str, description: str) -> Rejection:
    return Rejection(401, code, description)


def invalid_dpop_proof(description: str) -> Rejection:
    return Rejection(401, "invalid_dpop_proof", description, challenge_error="invalid_dpop_proof")


def use_dpop_nonce(nonce: str, description: str) -> Rejection:
    """RFC 9449 §8: the client retries with this nonce in a new proof."""
    return Rejection(401, "use_dpop_nonce", description, {"DPoP-Nonce": nonce}, challenge_error="use_dpop_nonce")


def replay_store_unavailable(description: str) -> Rejection:
    return Rejection(503, "replay_store_unavailable", description, {"Retry-After": "1"})


def token_expired_during_stream() -> Rejection:
    return unauthorized("token_expired_during_stream",
                        "the token expired while the request body was still arriving; send it with a fresh token")


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
