"""An authenticator for `explain --claims` and `test`: the claims are taken as an already verified payload.

It stands where the token verifier stands, so the route, the rule and the
scope parsing (`granted_scopes`, per provider `scope_claims`) are the
gateway's own.  The provider is the one whose issuer is the claims' `iss`;
without `iss`, the first provider the route accepts.
"""
from __future__ import annotations

import math
from typing import Any

from gateway import errors
from gateway.config.model import ProviderConfig
from gateway.auth.identity import Identity
from gateway.auth.verifier import granted_scopes, issuer_not_accepted


class ClaimsAuthenticator:
    def __init__(self, providers: tuple[ProviderConfig, ...]):
        self.providers = providers

    def provider_for(self, claims: dict[str, Any], allowed: frozenset[str] | None) -> ProviderConfig:
        issuer = claims.get("iss")
        if issuer is not None:
            for provider in self.providers:
                if provider.issuer == issuer:
                    return provider
            raise errors.unauthorized("invalid_claims", "token issuer is not one this gateway trusts")
        candidates = [p for p in self.providers if allowed is None or p.name in allowed]
        if not candidates:
            raise errors.unauthorized("invalid_token", "no provider is accepted on this route")
        return candidates[0]

    async def authenticate(self, claims: dict[str, Any], allowed: frozenset[str] | None) -> Identity:
        provider = self.provider_for(claims, allowed)
        if allowed is not None and provider.name not in allowed:
            raise issuer_not_accepted(provider, allowed, self.providers)
        subject = claims.get("sub")
        return Identity(
            provider=provider.name,
            issuer=provider.issuer,
            subject=subject if isinstance(subject, str) else None,
            claims=claims,
            scopes=granted_scopes(claims, provider.scope_claims),
            expires_at=math.inf,
            upstream_headers=(),
            key_ref=(),
        )
