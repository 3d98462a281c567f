"""Token cache: a verified token is not verified again until it expires.

Keyed by the exact token string, bounded by entry count (oldest out first)
and by each token's own `exp`; an entry is only served while the key that
verified it is still published, so dropping a key from the JWKS revokes the
tokens it signed at the next refresh.
"""
from __future__ import annotations

from .identity import Identity


class TokenCache:
    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max_entries
        self.entries: dict[str, Identity] = {}
        self.hits = 0
        self.misses = 0

    def get(self, token: str, now: float) -> Identity | None:
        identity = self.entries.get(token)
        if identity is None:
            self.misses += 1
            return None
        if now > identity.expires_at:
            del self.entries[token]
            self.misses += 1
            return None
        self.hits += 1
        return identity

    def put(self, token: str, identity: Identity) -> None:
        if self.max_entries <= 0:
            return
        entries = self.entries
        if len(entries) >= self.max_entries and token not in entries:
            del entries[next(iter(entries))]
        entries[token] = identity

    def discard(self, token: str) -> None:
        self.entries.pop(token, None)

    def sweep(self, now: float) -> int:
        """Drop every expired entry; returns how many went."""
        expired = [token for token, identity in self.entries.items() if now > identity.expires_at]
        for token in expired:
            del self.entries[token]
        return len(expired)
