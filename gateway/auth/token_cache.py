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
_PADDING = bytes(MIN_ENTRY_BYTES - _TAIL_SIZE)  # sliced from its end to fill an entry up to MIN_ENTRY_BYTES
_NO_MISS = (None, b"")
_MARSHAL = 2  # format version: unpacks ~15% faster than 4, whose back-references this data does not need


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so RSS falls after a burst of tokens expires."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused, just not returned
        pass


_SHA256 = hashlib.sha256()  # copied for each key: hashlib.sha256() looks the digest up in OpenSSL on every call


def _key(token: str) -> bytes:
    digest = _SHA256.copy()  # ~1.3 us less per call right after a signature check, when OpenSSL's caches are cold
    digest.update(token.encode())
    return digest.digest()


class TokenCache:
    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self.entries: dict[bytes, bytes] = {}  # sha256(token) -> packed entry
        self.profiles: dict[int, tuple] = {}  # number -> (provider, issuer, scopes, key_ref)
        self._profile_numbers: dict[tuple, int] = {}
        self._next_profile = 0
        # (token, its key) of the last miss, until its put or discard: a miss hashes the token once, not once for
        # the fast path's look, once for the general path's and once for the put; at most one token is held
        self._missed = _NO_MISS
        self.hits = 0
        self.misses = 0

    def get(self, token: str, now: float, count_miss: bool = True) -> Identity | None:
        """`count_miss=False`: a look that is repeated by the general path on a miss (the fast path's)."""
        key = self._key_of(token)
        entry = self.entries.get(key)
        if entry is None:
            self.misses += count_miss
            self._missed = (token, key)
            return None
        expires_at, number, claims_at = _TAIL.unpack_from(entry, len(entry) - _TAIL_SIZE)
        if now > expires_at:
            del self.entries[key]
            self.misses += count_miss
            self._missed = (token, key)
            return None
        provider, issuer, scopes, key_ref = self.profiles[number]
        subject, headers, jkt = marshal.loads(entry)  # it reads one value and leaves what follows alone
        self.hits += 1
        return Identity(provider, issuer, subject, (entry, claims_at), scopes, expires_at, headers, key_ref, jkt)

    def put(self, token: str, identity: Identity) -> None:
        key = self._key_of(token)
        self._missed = _NO_MISS  # the token is not kept beyond its own verification
        if self.max_entries <= 0:
            return
        try:
            packed = marshal.dumps((identity.subject, identity.upstream_headers, identity.jkt), _MARSHAL)
            claims = marshal.dumps(identity.claims, _MARSHAL)
        except ValueError:  # something marshal cannot hold (never from the verifier): verify it again next time
            return
        tail = _TAIL.pack(identity.expires_at, self._profile(identity), len(packed))
        entry = b"".join((packed, claims, _PADDING[len(packed) + len(claims):], tail))
        entries = self.entries
        if len(entries) >= self.max_entries and key not in entries:
            # the oldest 1/64 at once: next(iter(dict)) walks every hole earlier deletions left at the front
            for old in list(islice(entries, max(1, self.max_entries // 64))):
                del entries[old]
        entries[key] = entry

    def _profile(self, identity: Identity) -> int:
        kid, algorithm, key = identity.key_ref
        shape = (identity.provider, identity.issuer, identity.scopes, kid, algorithm, id(key))  # a key by identity
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
        key = self._key_of(token)
        self._missed = _NO_MISS
        self.entries.pop(key, None)

    def _key_of(self, token: str) -> bytes:
        """The token's key, from the last miss when it is that very string (another one may have missed since)."""
        missed_token, key = self._missed
        return key if missed_token is token else _key(token)

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
