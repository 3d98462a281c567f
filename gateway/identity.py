"""What a verified token means to the rest of the pipeline, built once per token."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class Identity:
    provider: str
    issuer: str
    subject: str | None
    claims: Mapping[str, Any]
    scopes: frozenset[str]
    expires_at: float  # exp plus leeway, epoch seconds
    upstream_headers: tuple[tuple[str, str], ...]
    key_ref: tuple  # (kid, alg, key object) that verified it: revoked once the JWKS drops it
