"""Authenticator: the token cache in front of the verifier, with the same checks on both paths.

A cached token skips the signature check, never its binding: a DPoP proof (or
its absence) is checked on every request, hit or miss.
"""
from __future__ import annotations

import time

from gateway import errors
from gateway.auth.dpop import DpopChecker, ProofRequest, check_unproven
from gateway.auth.identity import Identity
from gateway.auth.jwks_cache import JwksCache
from gateway.auth.token_cache import TokenCache
from gateway.auth.verifier import Verifier, issuer_not_accepted


class Authenticator:
    def __init__(self, caches: dict[str, JwksCache], token_cache: TokenCache, clock=time.time,
                 dpop: DpopChecker | None = None):
        self.caches = caches
        self.verifier = Verifier(caches, clock)
        self.token_cache = token_cache
        self.clock = clock
        self.dpop = dpop  # None: no proof can be checked, so DPoP requests are refused

    async def authenticate(self, credential: str | ProofRequest, allowed: frozenset[str] | None) -> Identity:
        """`credential`: a bearer token alone, or a token with its DPoP header(s) and request facts."""
        token = credential if type(credential) is str else credential.token
        identity = await self._identity(token, allowed)
        if type(credential) is str:
            check_unproven(identity)
        elif self.dpop is None:
            raise errors.unauthorized("invalid_token", "DPoP proofs are not checked here; send a bearer token")
        else:
            await self.dpop.check(identity, self.caches[identity.provider].provider, credential)
        return identity

    def cached_bearer(self, token: str, allowed: frozenset[str] | None) -> Identity | None:
        """A bearer token's identity when the cache holds it, with every check `authenticate` makes on a hit;
        None when it has to be verified (the fast path's `admit` then returns Pending, for `authenticate`)."""
        identity = self._cached(token, allowed, count_miss=False)  # a miss is counted when `authenticate` looks
        if identity is not None:
            check_unproven(identity)
        return identity

    def _cached(self, token: str, allowed: frozenset[str] | None, count_miss: bool = True) -> Identity | None:
        identity = self.token_cache.get(token, self.clock(), count_miss)
        if identity is None:
            return None
        if not self.caches[identity.provider].holds(*identity.key_ref):
            self.token_cache.discard(token)  # its key was rotated out: verify again, likely to fail
            return None
        if allowed is not None and identity.provider not in allowed:
            raise issuer_not_accepted(self.caches[identity.provider].provider, allowed,
                                      (cache.provider for cache in self.caches.values()))
        return identity

    async def _identity(self, token: str, allowed: frozenset[str] | None) -> Identity:
        identity = self._cached(token, allowed)
        if identity is None:
            try:
                identity = await self.verifier.verify_bearer(token, allowed)
            except BaseException:
                self.token_cache.discard(token)  # the cache remembers a missed token until its put: not a refused one
                raise
            self.token_cache.put(token, identity)
        return identity
