"""Decision cache: what admitting a plain request decided, kept per (method, target, Authorization).

On a cache hit most of a request's CPU went into deciding again what the last
request with the same request line and token was told: the canonical path,
the route, the token's extraction and its token-cache entry, the binding and
the route's rule.  All of that depends on nothing but those three strings and
the rules being served, so the filter keeps the outcome of the requests it
may keep (see `AuthFilter._decision_to_keep`) in this bounded map, one per
generation of rules (a reload starts empty).

What can change without the strings changing is checked on every use: the
token's expiry and whether the key that verified it is still published (as
the token cache does), exactly one Authorization header, and no DPoP header.
Everything that depends on the rest of the request (header hygiene, the
forwarding headers, the request id) is still built per request by the filter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gateway.auth.identity import Identity
from gateway.auth.jwks_cache import JwksCache
from gateway.auth.token_cache import TokenCache
from gateway.pipeline.route_table import Route

SIZE = 1024  # entries; when full it starts again empty (the filter refills it from its own path)
Key = tuple[str, str, "str | None"]  # (method, raw target, the Authorization header's value)


@dataclass(frozen=True, slots=True)
class Decision:
    path: str  # canonical
    query: str
    route: Route
    identity: Identity | None  # None: the route read no token
    forward_authorization: bool  # the client's Authorization goes upstream
    expires_at: float | None  # streams end then (token_expiry)


class DecisionCache:
    def __init__(self, caches: dict[str, JwksCache], token_cache: TokenCache, clock: Callable[[], float]):
        self.caches = caches
        self.token_cache = token_cache  # its hit count includes the hits served from here
        self.clock = clock
        self.entries: dict[Key, Decision] = {}
        self.hits = 0

    @staticmethod
    def key(method: str, target: str, headers) -> Key | None:
        """The request's key; None when it has two Authorization headers or a DPoP header (never kept)."""
        authorization = headers.getall("Authorization", ())
        if len(authorization) > 1 or "DPoP" in headers:
            return None
        return method, target, authorization[0] if authorization else None

    def get(self, key: Key) -> Decision | None:
        decision = self.entries.get(key)
        if decision is None:
            return None
        identity = decision.identity
        if identity is not None:
            if self.clock() > identity.expires_at or not self.caches[identity.provider].holds(*identity.key_ref):
                del self.entries[key]  # the general steps decide again (and refuse)
                return None
            self.token_cache.hits += 1
        self.hits += 1
        return decision

    def put(self, key: Key, decision: Decision) -> None:
        if len(self.entries) >= SIZE:
            self.entries.clear()
        self.entries[key] = decision
