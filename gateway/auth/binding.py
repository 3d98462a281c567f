"""Sender-constrained tokens: a token bound by `cnf` is only good on the connection it is bound to.

RFC 8705 §3: `cnf: {"x5t#S256": <base64url SHA-256 of the client certificate's DER>}`
binds a token to a client certificate; it is accepted only on a TLS connection whose
verified client certificate has that thumbprint.  The verifier reads `cnf` once, when
it verifies the token, and records the binding in the identity headers it builds
(`X-Auth-Binding: mtls`); the check against the connection runs on every request,
after the token cache, because the same token may arrive on any connection.  A `cnf`
with no member this gateway can check is refused: accepting it would drop the
constraint its issuer asked for.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

from gateway import errors
from gateway.auth.identity import Identity

BINDING_HEADER = "X-Auth-Binding"  # which binding the upstream can rely on: "mtls"
CLIENT_CERT_HEADER = "X-Auth-Client-Cert-Sha256"  # the verified client certificate's thumbprint
MTLS = "mtls"
DPOP_BINDING = "dpop"
X5T_S256 = "x5t#S256"
JKT = "jkt"
_SHA256_B64URL = re.compile(r"[A-Za-z0-9_-]{43}\Z")


def certificate_thumbprint(der: bytes) -> str:
    """The base64url (unpadded) SHA-256 of a DER certificate: the form of `x5t#S256`."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def confirmation_headers(claims: dict) -> tuple[tuple[str, str], ...]:
    """The identity headers a token's `cnf` adds, read at verification; a `cnf` that cannot be checked is a 401.

    `cnf.jkt` (RFC 9449 §6.1) binds the token to a DPoP key: its proofs are checked on every
    request by auth/dpop.py, and the binding header says `dpop`.
    """
    cnf = claims.get("cnf")
    if cnf is None:
        return ()
    if not isinstance(cnf, dict):
        raise errors.unauthorized("invalid_token", "token cnf claim must be a JSON object (RFC 7800)")
    if JKT in cnf:
        if X5T_S256 in cnf:
            raise errors.unauthorized("invalid_token", f"token is bound both to a DPoP key and to a certificate "
                                                       f"(cnf {JKT} and {X5T_S256}); this gateway checks one binding")
        if not isinstance(cnf[JKT], str) or not _SHA256_B64URL.match(cnf[JKT]):
            raise errors.unauthorized("invalid_token", "token cnf.jkt must be the base64url SHA-256 JWK thumbprint "
                                                       "of a DPoP key (43 characters, RFC 9449)")
        return ((BINDING_HEADER, DPOP_BINDING),)
    thumbprint = cnf.get(X5T_S256)
    if thumbprint is None:
        members = ", ".join(sorted(str(k) for k in cnf)) or "none"
        raise errors.unauthorized("invalid_token", f"token is bound by cnf member(s) {members}, which this gateway "
                                                   f"cannot check; it checks {X5T_S256} (RFC 8705) and {JKT} "
                                                   "(RFC 9449)")
    if not isinstance(thumbprint, str) or not _SHA256_B64URL.match(thumbprint):
        raise errors.unauthorized("invalid_token", f"token cnf {X5T_S256} must be the base64url SHA-256 "
                                                   "of a certificate (43 characters)")
    return ((BINDING_HEADER, MTLS),)


def binding_of(identity: Identity) -> str | None:
    for name, value in identity.upstream_headers:
        if name == BINDING_HEADER:
            return value
    return None


def check_binding(identity: Identity, presented: str | None, binding_required: bool) -> None:
    """Per request: a bound token only with its certificate; with binding required, no unbound token.

    `presented`: the thumbprint of the connection's verified client certificate, None
    when it showed none (plain http, or TLS without a client certificate).
    """
    binding = binding_of(identity)
    if binding is None:
        if binding_required:
            raise errors.unauthorized("invalid_token", f"provider {identity.provider!r} accepts only "
                                                       "sender-constrained tokens (token_binding: required); "
                                                       "this token has no cnf binding")
        return
    if binding == DPOP_BINDING:  # its proof was checked by the authenticator (auth/dpop.py)
        return
    expected = identity.claims["cnf"][X5T_S256]
    if presented is None or not hmac.compare_digest(expected, presented):
        shown = "no client certificate" if presented is None else "a different client certificate"
        raise errors.unauthorized("invalid_token", "token is bound to a client certificate this connection did "
                                                   f"not present (it presented {shown}); send it over https "
                                                   "with the certificate it was issued for (RFC 8705)")
