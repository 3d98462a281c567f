"""Rule lints beyond what the loader refuses, shared by `check`, `serve` and live reload.

The loader already refuses a route an earlier one swallows whole (it can
never match, and if the earlier route is public the protected one is
silently open; see pipeline/route_overlap.py).  This module warns about one
swallowed for some methods only, required scopes no configured provider can
put in a token, keys fetched over plain http, and a TLS certificate expiring
within 14 days.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

from gateway.config.model import GatewayConfig
from gateway.auth.requirements import AllOf, AnyOf, Requirement
from gateway.pipeline.route_overlap import overlaps
from gateway.pipeline.route_table import Route


@dataclass(frozen=True)
class Finding:
    """A warning: the config is served, but probably not as its author meant."""

    line: int
    message: str

    def format(self, source: str) -> str:
        return f"{source}:{self.line}: warning: {self.message}"


def shadowing(routes: tuple[Route, ...]) -> Iterator[Finding]:
    """Routes an earlier one answers for some methods (the loader already refused those it answers for all)."""
    for overlap in overlaps(routes):
        if overlap.taken is not None:
            yield Finding(overlap.route.line, overlap.describe())


def _requirements(rule) -> Iterator[Requirement]:
    if isinstance(rule, Requirement):
        yield rule
    elif isinstance(rule, (AllOf, AnyOf)):
        for part in rule.rules:
            yield from _requirements(part)


def unreachable_scopes(config: GatewayConfig) -> Iterator[Finding]:
    """Scopes a route demands that no provider allowed there can carry (providers may declare `scopes:`)."""
    for route in config.routes.routes:
        for need in _requirements(route.access):
            names = {p.name for p in config.providers}
            for allowed in (route.providers, need.providers):
                if allowed is not None:
                    names &= allowed
            if not names:
                yield Finding(route.line, f"route {route.pattern!r}: no provider is allowed both by the route and by "
                                          "its rule, so every token is refused")
                continue
            for scope in sorted(need.scopes | need.any_scopes):
                if any(c.isspace() for c in scope):
                    yield Finding(route.line, f"scope {scope!r} contains whitespace; a space-separated scope "
                                              "claim can never carry it")
            catalogs = [config.provider(n).scopes for n in sorted(names)]
            if any(c is None for c in catalogs):
                continue  # some provider did not declare its scopes: anything may be granted
            carried = frozenset().union(*catalogs)
            for scope in sorted(need.scopes - carried):
                yield Finding(route.line, f"route {route.pattern!r} requires scope {scope!r}, which none of the "
                                          f"providers {', '.join(sorted(names))} declares under 'scopes:'")
            if need.any_scopes and not need.any_scopes & carried:
                yield Finding(route.line, f"route {route.pattern!r} needs one of the scopes "
                                          f"{' '.join(sorted(need.any_scopes))}, none of which its providers declare")


def plain_http_keys(config: GatewayConfig) -> Iterator[Finding]:
    """Keys fetched without TLS can be swapped by anyone on the path: right for a local dev issuer only."""
    for provider in config.providers:
        if provider.static_jwks is None and (provider.jwks_uri or provider.issuer).startswith("http://"):
            yield Finding(provider.line, f"provider {provider.name!r} fetches its signing keys over plain http "
                                         f"({provider.jwks_uri or provider.issuer}): fine for the local development "
                                         "issuer, never in production (use the provider's https issuer)")


EXPIRY_WARNING_DAYS = 14


def tls_expiry(config: GatewayConfig, now: float | None = None) -> Iterator[Finding]:
    """A certificate that expires soon: the rotation that should have replaced it has not happened."""
    if config.tls is None:
        return
    left = config.tls.not_after - (time.time() if now is None else now)
    if left < EXPIRY_WARNING_DAYS * 86400:
        yield Finding(config.tls.line, f"the certificate in {config.tls.cert_file} expires in {left / 86400:.1f} "
                                       f"days ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(config.tls.not_after))} "
                                       "UTC); replace the files (the gateway picks them up without a restart)")


def lint(config: GatewayConfig) -> list[Finding]:
    return sorted([*shadowing(config.routes.routes), *unreachable_scopes(config), *plain_http_keys(config),
                   *tls_expiry(config)], key=lambda f: f.line)


def load_checked(load: Callable[[], GatewayConfig]) -> tuple[GatewayConfig, list[str]]:
    """Load (errors raise ConfigError) and lint; returns (config, warnings)."""
    config = load()
    return config, [f.format(config.source) for f in lint(config)]
