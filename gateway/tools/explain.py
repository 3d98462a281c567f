"""`python -m gateway explain`: which route, which rule, and what the gateway would answer, and why.

It runs the gateway's own decision steps (`decide.evaluate`) and never
contacts the upstream.  With `--token` the token goes through the real
extractor checks and verifier (so the providers' keys are fetched, only
then); with `--claims` the payload is taken as already verified.
"""
from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError

from gateway.auth.authenticator import Authenticator
from gateway.auth.jwks_cache import issuer_difference
from gateway.tools.claims_auth import ClaimsAuthenticator
from gateway.config.model import GatewayConfig, ProviderConfig
from gateway.pipeline.decide import Outcome, evaluate
from gateway.auth.extractor import check_token
from gateway.auth.identity import Identity
from gateway.auth.requirements import TokenNeed
from gateway.tools.probe import fetched_caches
from gateway.auth.token_cache import TokenCache

NEEDS = {
    TokenNeed.NONE: "no token is looked at",
    TokenNeed.OPTIONAL: "a token is optional, but one that is sent must be valid",
    TokenNeed.REQUIRED: "a valid token is required",
}


class _FetchingAuthenticator:
    """The real Authenticator, over caches fetched the first time a token needs verifying."""

    def __init__(self, providers: tuple[ProviderConfig, ...], stack: AsyncExitStack):
        self.providers = providers
        self.stack = stack
        self.inner: Authenticator | None = None

    async def authenticate(self, token: str, allowed: frozenset[str] | None) -> Identity:
        if self.inner is None:
            caches = await self.stack.enter_async_context(fetched_caches(self.providers))
            self.inner = Authenticator(caches, TokenCache())
        return await self.inner.authenticate(token, allowed)


async def explain(config: GatewayConfig, method: str, target: str,
                  token: str | None = None, claims: dict[str, Any] | None = None) -> tuple[Outcome, list[str]]:
    async with AsyncExitStack() as stack:
        if token is not None:
            authenticator = _FetchingAuthenticator(config.providers, stack)
            credential = lambda: check_token(token, config.limits.max_token_bytes)  # noqa: E731
        else:
            authenticator = ClaimsAuthenticator(config.providers)
            credential = lambda: claims  # noqa: E731
        outcome = await evaluate(config.routes, method.upper(), target, credential, authenticator,
                                 config.allow_path_params)
    return outcome, _report(config, method.upper(), target, outcome, token, claims is not None)


def _report(config: GatewayConfig, method: str, target: str, outcome: Outcome, token: str | None,
            claims: bool) -> list[str]:
    lines = [f"request   {method} {target}"]
    if outcome.path is None:
        lines.append("path      refused before any route is looked at")
    else:
        lines.append(f"path      {outcome.path}  (canonical: the route is chosen by it, the upstream gets it)")
    route = outcome.route
    if route is None:
        if outcome.code == "method_not_allowed":
            lines.append(f"route     the path matches, the method does not (Allow: {outcome.allow})")
        elif outcome.path is not None:
            lines.append("route     none matches: fail closed, the upstream never sees it")
    else:
        methods = "any method" if route.methods is None else ",".join(sorted(route.methods))
        providers = "any provider" if route.providers is None else "providers " + ",".join(sorted(route.providers))
        lines.append(f"route     {config.source}:{route.line}  {route.pattern}  ({methods}; {providers})")
        lines.append(f"rule      {route.access.describe()}: {NEEDS[route.access.token]}")
        if token is not None and route.access.token is not TokenNeed.NONE:
            lines.append("issuer    " + _issuer_line(config, route, token))
        lines.append("token     " + _token_line(route, outcome, token is not None, claims))
    lines.append(f"decision  {outcome.status} {outcome.code}: {outcome.description}")
    return lines


def _token_line(route, outcome: Outcome, token: bool, claims: bool) -> str:
    identity = outcome.identity
    if route.access.token is TokenNeed.NONE:
        return "not looked at (public route)"
    if identity is not None:
        how = "claims taken as verified" if claims else "verified"
        scopes = " ".join(sorted(identity.scopes)) or "(none)"
        return f"{how}: provider {identity.provider!r}, sub {identity.subject!r}, scopes {scopes}"
    if not (token or claims):
        return "none given"
    return f"rejected: {outcome.code}"


def _issuer_line(config: GatewayConfig, route, token: str) -> str:
    """The token's iss (read unverified, for display only) beside the issuers this route accepts."""
    try:
        iss = jwt.get_unverified_claims(token).get("iss")
    except (JOSEError, AttributeError):
        return "the token's iss cannot be read (not a JWT with a JSON payload)"
    accepted = [p for p in config.providers if route.providers is None or p.name in route.providers]
    listed = ", ".join(f"{p.issuer!r} ({p.name})" for p in accepted) or "none"
    line = f"token iss {iss!r}; this route accepts {listed}"
    if accepted and all(p.issuer != iss for p in accepted):
        fix = issuer_difference(accepted[0].issuer, iss) if len(accepted) == 1 else "no provider here has that issuer"
        line += f"; no match: {fix}"
    return line
