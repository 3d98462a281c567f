"""Token cache: a verified token is not verified again until it expires.

Keyed by the SHA-256 of the exact token string (32 bytes instead of the
token's ~1 KB), bounded by entry count (oldest out first)
and by each token's own `exp`; an entry is only served while the key that
verified it is still published, so dropping a key from the JWKS revokes the
tokens it signed at the next refresh.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib

from .identity import Identity


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so RSS falls after a burst of tokens expires."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused, just not returned
        pass


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenCache:
    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self.entries: dict[bytes, Identity] = {}
        self.hits = 0
        self.misses = 0

    def get(self, token: str, now: float) -> Identity | None:
        key = _key(token)
        identity = self.entries.get(key)
        if identity is None:
            self.misses += 1
            return None
        if now > identity.expires_at:
            del self.entries[key]
            self.misses += 1
            return None
        self.hits += 1
        return identity

    def put(self, token: str, identity: Identity) -> None:
        if self.max_entries <= 0:
            return
        entries = self.entries
        key = _key(token)
        if len(entries) >= self.max_entries and key not in entries:
            del entries[next(iter(entries))]
        entries[key] = identity

    def discard(self, token: str) -> None:
        self.entries.pop(_key(token), None)

    def sweep(self, now: float) -> int:
        """Drop every expired entry; returns how many went.

        The dict is rebuilt rather than deleted from, because a Python dict never
        shrinks its table; then freed pages are returned to the OS.
        """
        before = len(self.entries)
        self.entries = {key: identity for key, identity in self.entries.items() if now <= identity.expires_at}
        swept = before - len(self.entries)
        if swept:
            _release_free_memory()
        return swept
