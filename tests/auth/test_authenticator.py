"""The authenticator's token cache use on a miss: the token is hashed once, and not held once answered."""
import json

import pytest

from gateway import errors
from gateway.auth import token_cache
from gateway.auth.authenticator import Authenticator
from gateway.auth.jwks_cache import JwksCache
from gateway.auth.token_cache import TokenCache
from tests.support.config import config_text, provider_yaml, typed_config
from tests.support.keys import SigningKey, claims


@pytest.fixture
async def signed():
    """An authenticator over a static JWKS, and the key that signs for it."""
    key = SigningKey.rsa("rsa-1")
    config = typed_config(config_text("http://127.0.0.1:1", provider_yaml(
        None, extra=f"jwks: {json.dumps({'keys': [key.public_jwk]})}"), "  - {path: /, access: authenticated}\n"))
    caches = {p.name: JwksCache(p, None) for p in config.providers}
    for cache in caches.values():
        await cache.start()
    return Authenticator(caches, TokenCache()), key


def _holds(cache: TokenCache, token: str) -> bool:
    """Does the cache hold the token's text anywhere outside its entries (which are keyed by SHA-256)?"""
    return any(value == token or (type(value) is tuple and token in value) for value in vars(cache).values())


async def test_a_miss_hashes_the_token_once_for_both_looks_and_the_put(signed, monkeypatch):
    authenticator, key = signed
    hashed = []
    original = token_cache._key
    monkeypatch.setattr(token_cache, "_key", lambda token: hashed.append(token) or original(token))
    token = key.sign(claims())
    assert authenticator.cached_bearer(token, None) is None  # the fast path's look
    identity = await authenticator.authenticate(token, None)  # the general path's look, the verification, the put
    assert hashed == [token] and not _holds(authenticator.token_cache, token)
    assert authenticator.cached_bearer(token, None) == identity
    assert (authenticator.token_cache.hits, authenticator.token_cache.misses) == (1, 1)


async def test_a_refused_token_is_not_held_by_the_cache(signed):
    authenticator, key = signed
    forged = SigningKey.rsa("rsa-1").sign(claims())
    assert authenticator.cached_bearer(forged, None) is None
    with pytest.raises(errors.Rejection) as refused:
        await authenticator.authenticate(forged, None)
    assert refused.value.code == "invalid_signature"
    assert not _holds(authenticator.token_cache, forged) and not authenticator.token_cache.entries
