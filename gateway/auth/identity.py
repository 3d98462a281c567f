"""What a verified token means to the rest of the pipeline, built once per token.

Nothing changes an Identity after it is built.  It is a plain slotted class, no longer a frozen
dataclass, because every cache hit now builds one, unpacked from the token cache's bytes
(token_cache.py), and a frozen dataclass's `__init__` (one `object.__setattr__` a field) costs
~4x as much; since each hit gets its own, no request could change what another one sees anyway.
"""
from __future__ import annotations

import marshal
from typing import Any, Mapping

FIELDS = ("provider", "issuer", "subject", "claims", "scopes", "expires_at", "upstream_headers", "key_ref", "jkt")


class Identity:
    __slots__ = ("provider", "issuer", "subject", "_claims", "scopes", "expires_at", "upstream_headers", "key_ref",
                 "jkt")
    provider: str
    issuer: str
    subject: str | None
    scopes: frozenset[str]
    expires_at: float  # exp plus leeway, epoch seconds
    upstream_headers: tuple[tuple[str, str], ...]
    key_ref: tuple  # (kid, alg, key object) that verified it: revoked once the JWKS drops it
    jkt: str | None  # cnf.jkt: the thumbprint of the DPoP key the token is bound to (RFC 9449 §6)

    def __init__(self, provider: str, issuer: str, subject: str | None, claims: Mapping[str, Any] | tuple[bytes, int],
                 scopes: frozenset[str], expires_at: float, upstream_headers: tuple[tuple[str, str], ...],
                 key_ref: tuple, jkt: str | None = None):
        self.provider = provider
        self.issuer = issuer
        self.subject = subject
        self._claims = claims  # a mapping, or (token cache entry, where its marshal-packed claims start)
        self.scopes = scopes
        self.expires_at = expires_at
        self.upstream_headers = upstream_headers
        self.key_ref = key_ref
        self.jkt = jkt

    @property
    def claims(self) -> Mapping[str, Any]:
        """The verified payload; only rules with claim conditions (and `explain`) read it."""
        claims = self._claims
        if type(claims) is tuple:  # unpacked on first read
            entry, start = claims
            claims = self._claims = marshal.loads(memoryview(entry)[start:])
        return claims

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in FIELDS)

    __hash__ = None  # claims is a dict, as with the frozen dataclass this replaces

    def __repr__(self) -> str:
        return "Identity(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS) + ")"
