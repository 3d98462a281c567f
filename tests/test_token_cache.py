from gateway.identity import Identity
from gateway.token_cache import TokenCache


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
