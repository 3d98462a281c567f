"""Bearer extractor: finds exactly one well-formed compact JWS in the request, or says why not.

`Authorization: Bearer <token>` (RFC 6750) and `Authorization: DPoP <token>` (RFC 9449 §7.1)
are read alike; which scheme carried the token decides whether a DPoP proof must come with it.

Everything here runs before any JSON or crypto work, so oversized or oddly
shaped input is refused cheaply and never reaches the parser.
"""
from __future__ import annotations

import re

from multidict import CIMultiDictProxy

from gateway import errors
from gateway.errors import BEARER, DPOP

_SCHEMES = {"bearer": BEARER, "dpop": DPOP}  # auth-schemes are case-insensitive (RFC 9110 §11.1)
_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")


def extract_authorization(headers: CIMultiDictProxy, max_token_bytes: int) -> tuple[str, str] | None:
    """(scheme, token) from `Authorization: Bearer <token>` or `DPoP <token>`, None when there is no header."""
    values = headers.getall("Authorization", ())
    if not values:
        return None
    if len(values) > 1:
        raise errors.unauthorized("invalid_header", "more than one Authorization header; send exactly one")
    parts = values[0].split()
    if not parts:
        raise errors.unauthorized("invalid_header", "Authorization header is empty; send 'Bearer <token>'")
    scheme = _SCHEMES.get(parts[0].lower())
    if scheme is None:
        raise errors.unauthorized("invalid_header", "Authorization header must start with Bearer (or DPoP)")
    if len(parts) == 1:
        raise errors.unauthorized("invalid_header", f"Token not found after {scheme}")
    if len(parts) > 2:
        raise errors.unauthorized("invalid_header", f"Authorization header must be '{scheme} <token>' with one token")
    return scheme, check_token(parts[1], max_token_bytes)


def check_token(token: str, max_token_bytes: int) -> str:
    """The token itself if it is a plausible compact JWS of bounded size, wherever it came from."""
    if not token:
        raise errors.unauthorized("invalid_header", "the token is empty")
    if len(token) > max_token_bytes:
        raise errors.unauthorized("invalid_header", f"token is longer than {max_token_bytes} bytes")
    if _JWS.match(token) is None:
        dots = token.count(".")
        if dots == 4:
            raise errors.unauthorized("invalid_header", "encrypted tokens (JWE) are not accepted; send a signed JWT")
        raise errors.unauthorized("invalid_header",
                                  "token is not a JWT: expected three base64url parts separated by '.'")
    return token
