import gc
import sys

from gateway.auth.identity import Identity
from gateway.auth.token_cache import MIN_ENTRY_BYTES, TokenCache


def identity(expires_at):
    return Identity("p", "iss", "sub", {}, frozenset(), expires_at, (), ("kid", "RS256", object()))


def test_bounded_by_entries_oldest_out_first():
    cache = TokenCache(max_entries=3)
    for n in range(5):
        cache.put(f"t{n}", identity(100))
    assert len(cache.entries) == 3
    assert cache.get("t0", 0) is None and cache.get("t1", 0) is None
    assert cache.get("t4", 0) is not None


def test_expired_entries_are_not_served_and_are_swept():
    cache = TokenCache()
    cache.put("old", identity(10))
    cache.put("new", identity(1000))
    assert cache.get("old", 11) is None
    cache.put("old2", identity(10))
    assert cache.sweep(500) == 1
    assert len(cache.entries) == 1 and cache.get("new", 500) is not None
    assert (cache.hits, cache.misses) == (1, 1)


def test_token_text_is_not_kept_in_memory():
    cache = TokenCache()
    token = "header.payload.signature-that-is-secret"
    cache.put(token, identity(100))
    assert all(isinstance(key, bytes) and len(key) == 32 for key in cache.entries)
    cache.discard(token)
    assert not cache.entries


def test_a_missed_token_is_not_kept_once_it_was_put():
    """A miss remembers the token's SHA-256 for its put; neither the put nor a failed put keeps the token."""
    cache = TokenCache()
    token = "header.payload.signature-that-is-secret"
    assert cache.get(token, 0) is None
    cache.put(token, identity(100))
    assert cache.get(token, 0) is not None
    assert cache.get("never-put", 0) is None
    TokenCache.put(cache, "never-put", Identity("p", "iss", "sub", {"x": object()}, frozenset(), 100, (),
                                                ("kid", "RS256", object())))  # marshal refuses: not cached
    held = [value for value in vars(cache).values() if not isinstance(value, dict)]
    assert not any(value in (token, "never-put") or (type(value) is tuple and {token, "never-put"} & set(value))
                   for value in held)


def test_misses_that_interleave_each_get_their_own_entry():
    """Two requests miss, then both put (the second's verification finished first): each token keeps its key."""
    cache = TokenCache()
    first, second = "token.first.sig", "token.second.sig"
    assert cache.get(first, 0) is None and cache.get(second, 0) is None
    cache.put(second, identity(200))
    cache.put(first, identity(100))
    assert cache.get(first, 0).expires_at == 100 and cache.get(second, 0).expires_at == 200
    cache.put("".join(["token.", "first.sig"]), identity(300))  # an equal string, another object
    assert cache.get(first, 0).expires_at == 300 and len(cache.entries) == 2


class Key:  # stands for a JWKS key object: counted by identity, as JwksCache.holds does
    pass


def verified(n, key, expires_at=1000.0, scope=frozenset({"read:admin", "read:user"})):
    """An Identity shaped like the verifier's: claims dict, identity headers, (kid, alg, key)."""
    claims = {"iss": "https://issuer.example/", "sub": f"user-{n:06d}", "aud": "api", "exp": int(expires_at),
              "scope": "read:user read:admin", "roles": ["a", {"b": [1, 2.5, None, True]}], "jti": f"id-{n}"}
    headers = (("X-Auth-Subject", claims["sub"]), ("X-Auth-Issuer", claims["iss"]),
               ("X-Auth-Scopes", " ".join(sorted(scope))), ("X-Auth-Claims", f"payload-{n}" * 20))
    return Identity("p", claims["iss"], claims["sub"], claims, scope, expires_at, headers, ("kid-1", "ES256", key))


def test_a_hit_unpacks_what_was_verified():
    key = Key()
    cache = TokenCache()
    original = verified(7, key)
    cache.put("token-7", original)
    hit = cache.get("token-7", 0)
    assert hit is not original and hit == original
    assert hit.claims == original.claims and hit.upstream_headers == original.upstream_headers
    assert hit.key_ref[2] is key and hit.scopes is original.scopes and hit.expires_at == 1000.0
    assert cache.get("token-7", 1000.0) is not None and cache.get("token-7", 1000.001) is None  # served until exp


def test_each_hit_gets_its_own_identity():
    cache = TokenCache()
    cache.put("t", verified(1, Key()))
    first, second = cache.get("t", 0), cache.get("t", 0)
    assert first is not second
    first.claims["sub"] = "someone-else"  # a request that changed its copy changes no other
    assert second.claims["sub"] == cache.get("t", 0).claims["sub"] == "user-000001"


def test_entries_are_one_malloc_sized_bytes_object_each():
    """Small objects (pymalloc, <= 512 bytes) of many entries would pin 1 MiB arenas long after
    the tokens expired; an entry is one bytes object that malloc serves and malloc_trim gives back."""
    key = Key()
    cache = TokenCache()
    cache.put("warm", verified(0, key))
    count = 2000
    gc.collect()
    blocks = sys.getallocatedblocks()
    for n in range(count):
        cache.put(f"token-{n}", verified(n, key))
    gc.collect()
    per_entry = (sys.getallocatedblocks() - blocks) / count
    assert all(type(entry) is bytes and len(entry) >= MIN_ENTRY_BYTES for entry in cache.entries.values())
    assert per_entry < 2.5  # the entry and its 32-byte key (was ~25 small objects an entry)
    assert len(cache.profiles) == 1  # one provider, scope set and key: shared by every entry


def test_profiles_go_with_the_last_entry_that_used_them():
    cache = TokenCache()
    cache.put("old", verified(1, Key(), expires_at=10.0))
    new_key = Key()
    cache.put("new", verified(2, new_key, expires_at=1000.0, scope=frozenset({"x"})))
    assert len(cache.profiles) == 2
    assert cache.sweep(500) == 1
    assert [profile[3][2] for profile in cache.profiles.values()] == [new_key]
    assert cache.get("new", 500).scopes == frozenset({"x"})


def test_distinct_scope_sets_do_not_grow_profiles_without_bound():
    key = Key()
    cache = TokenCache(max_entries=10)
    for n in range(200):
        cache.put(f"t{n}", verified(n, key, scope=frozenset({f"scope-{n}"})))
    assert len(cache.entries) == 10 and len(cache.profiles) <= 2 * 10 + 64
    assert cache.get("t199", 0).scopes == frozenset({"scope-199"})


def test_claims_marshal_cannot_hold_are_not_cached():
    cache = TokenCache()
    odd = Identity("p", "iss", "sub", {"x": object()}, frozenset(), 100, (), ("kid", "RS256", Key()))
    cache.put("t", odd)
    assert not cache.entries and cache.get("t", 0) is None
