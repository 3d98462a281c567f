"""Token cache: a verified token is not verified again until it expires.

Keyed by the SHA-256 of the exact token string (32 bytes instead of the
token's ~1 KB), bounded by entry count (oldest out first)
and by each token's own `exp`; an entry is only served while the key that
verified it is still published, so dropping a key from the JWKS revokes the
tokens it signed at the next refresh.

Each entry is one bytes object of at least `MIN_ENTRY_BYTES`, a size CPython takes
from malloc rather than from its small-object arenas: the Identity's per-token parts
packed with `marshal` (subject, headers and DPoP binding, unpacked by every hit; then the claims,
unpacked only when a rule reads them), then its expiry and the number of a shared
"profile" (provider, issuer, scope set, key) that many tokens have in common.  Kept as
Identity objects, an entry was ~25 small objects; spread over 1 MiB arenas among the
few objects request handling keeps, they held ~40 MB after 20k tokens expired (an
arena is only given back when all of it is free).  Freed malloc memory goes back to
the OS page by page (`malloc_trim` after a sweep).  A hit unpacks a new Identity.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import marshal
import struct
from itertools import islice

from gateway.auth.identity import Identity

MIN_ENTRY_BYTES = 480  # a bytes object of 480+ bytes needs more than 512, pymalloc's limit: malloc serves it
_TAIL = struct.Struct("<dQI")  # an entry's last 20 bytes: expires_at, profile number, where the claims start
_TAIL_SIZE = _TAIL.size
_MARSHAL = 2  # format version: unpacks ~15% faster than 4, whose back-references this data does not need


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so RSS falls after a burst of tokens expires."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused, just not returned
        pass


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _profile_part(value: object) -> object:
    """What makes a key_ref part the same in a profile's dict key: a key object counts by identity."""
    return value if value is None or type(value) in (str, int) else id(value)


class TokenCache:
    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self.entries: dict[bytes, bytes] = {}  # sha256(token) -> packed entry
        self.profiles: dict[int, tuple] = {}  # number -> (provider, issuer, scopes, key_ref)
        self._profile_numbers: dict[tuple, int] = {}
        self._next_profile = 0
        self.hits = 0
        self.misses = 0

    def get(self, token: str, now: float, count_miss: bool = True) -> Identity | None:
        """`count_miss=False`: a look that is repeated by the general path on a miss (the fast path's)."""
        key = _key(token)
        entry = self.entries.get(key)
        if entry is None:
            self.misses += count_miss
            return None
        expires_at, number, claims_at = _TAIL.unpack_from(entry, len(entry) - _TAIL_SIZE)
        if now > expires_at:
            del self.entries[key]
            self.misses += count_miss
            return None
        provider, issuer, scopes, key_ref = self.profiles[number]
        subject, headers, jkt = marshal.loads(entry)  # it reads one value and leaves what follows alone
        self.hits += 1
        return Identity(provider, issuer, subject, (entry, claims_at), scopes, expires_at, headers, key_ref, jkt)

    def put(self, token: str, identity: Identity) -> None:
        if self.max_entries <= 0:
            return
        try:
            packed = marshal.dumps((identity.subject, identity.upstream_headers, identity.jkt), _MARSHAL)
            claims = marshal.dumps(identity.claims, _MARSHAL)
        except ValueError:  # something marshal cannot hold (never from the verifier): verify it again next time
            return
        padding = bytes(max(0, MIN_ENTRY_BYTES - _TAIL_SIZE - len(packed) - len(claims)))
        tail = _TAIL.pack(identity.expires_at, self._profile(identity), len(packed))
        entry = b"".join((packed, claims, padding, tail))
        entries = self.entries
        key = _key(token)
        if len(entries) >= self.max_entries and key not in entries:
            # the oldest 1/64 at once: next(iter(dict)) walks every hole earlier deletions left at the front
            for old in list(islice(entries, max(1, self.max_entries // 64))):
                del entries[old]
        entries[key] = entry

    def _profile(self, identity: Identity) -> int:
        shape = (identity.provider, identity.issuer, identity.scopes, tuple(map(_profile_part, identity.key_ref)))
        number = self._profile_numbers.get(shape)
        if number is None:
            if len(self.profiles) >= 2 * self.max_entries + 64:  # many distinct scope sets: drop unused ones
                self._prune_profiles()
            number = self._next_profile
            self._next_profile += 1
            self.profiles[number] = (identity.provider, identity.issuer, identity.scopes, identity.key_ref)
            self._profile_numbers[shape] = number
        return number

    def _prune_profiles(self) -> None:
        tail = _TAIL.unpack_from
        used = {tail(entry, len(entry) - _TAIL_SIZE)[1] for entry in self.entries.values()}
        self.profiles = {number: profile for number, profile in self.profiles.items() if number in used}
        self._profile_numbers = {shape: number for shape, number in self._profile_numbers.items() if number in used}

    def discard(self, token: str) -> None:
        self.entries.pop(_key(token), None)

    def sweep(self, now: float) -> int:
        """Drop every expired entry; returns how many went.

        The dict is rebuilt rather than deleted from, because a Python dict never
        shrinks its table; then freed pages are returned to the OS.
        """
        before = len(self.entries)
        tail = _TAIL.unpack_from
        self.entries = {key: entry for key, entry in self.entries.items()
                        if now <= tail(entry, len(entry) - _TAIL_SIZE)[0]}
        swept = before - len(self.entries)
        if swept:
            self._prune_profiles()
            _release_free_memory()
        return swept
