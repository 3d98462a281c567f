"""Rule lints beyond what the loader refuses, shared by `check`, `serve` and live reload.

The loader already refuses a route that repeats an earlier pattern.  This
module finds the rest of the "first match wins" traps: a later route that an
earlier *broader* pattern swallows (an error: it can never match, and if the
broader route is public the protected one is silently open), one that it
swallows for some methods only (a warning), required scopes no
configured provider can put in a token (a warning), keys fetched over
plain http (a warning), and a TLS certificate expiring within 14 days (a warning).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

from gateway.pipeline.canonical_path import canonical_segment
from gateway.config.model import GatewayConfig
from gateway.config.loader import ConfigError
from gateway.auth.requirements import AllOf, AnyOf, Requirement, TokenNeed
from gateway.pipeline.route_table import Route

STAR, DSTAR = object(), object()


@dataclass(frozen=True)
class Finding:
    line: int
    message: str
    error: bool

    def format(self, source: str) -> str:
        return f"{source}:{self.line}: {self.message}" if self.error else f"{source}:{self.line}: warning: {self.message}"


def segments(pattern: str) -> tuple:
    parts = pattern[1:].split("/")
    return tuple(STAR if p == "*" else DSTAR if p == "**" else canonical_segment(p) for p in parts)


def covers(broad: tuple, narrow: tuple) -> bool:
    """Does every path the `narrow` pattern matches also match `broad`?  Never a false yes."""
    if not broad:
        return not narrow
    head = broad[0]
    if head is DSTAR:
        return True
    if not narrow or narrow[0] is DSTAR:
        return False
    other = narrow[0]
    if head is STAR:
        if other == "":  # a trailing slash is an empty segment, and '*' needs at least one character
            return False
    elif other is STAR or other != head:
        return False
    return covers(broad[1:], narrow[1:])


def _methods(methods: frozenset[str] | None) -> str:
    return "every method" if methods is None else ",".join(sorted(methods))


def taken_methods(earlier: Route, later: Route) -> frozenset[str] | None:
    """The methods of `later` that `earlier` answers first (None: all of them), given patterns that cover."""
    if earlier.methods is None:
        return None
    if later.methods is None:
        return earlier.methods
    overlap = earlier.methods & later.methods
    return None if overlap == later.methods else overlap


def _open_word(route: Route) -> str | None:
    return {TokenNeed.NONE: "public", TokenNeed.OPTIONAL: "optional-token"}.get(route.access.token)


def shadowing(routes: tuple[Route, ...]) -> Iterator[Finding]:
    for index, route in enumerate(routes):
        narrow = segments(route.pattern)
        for earlier in routes[:index]:
            if not covers(segments(earlier.pattern), narrow):
                continue
            taken = taken_methods(earlier, route)
            if taken is not None and not taken:
                continue
            opened = _open_word(earlier) if route.access.token is TokenNeed.REQUIRED else None
            relation = "earlier" if earlier.pattern == route.pattern else "broader"
            where = f"the {relation} {opened + ' ' if opened else ''}route {earlier.pattern!r} at line {earlier.line}"
            if taken is None:
                if opened:
                    yield Finding(route.line, f"protected route {route.pattern!r} is shadowed by {where}: every "
                                              "request it should protect is answered without a token; "
                                              "move it above, or narrow the broader route", True)
                else:
                    yield Finding(route.line, f"route {route.pattern!r} can never match: {where} takes every "
                                              "request it would get; move it above, or remove it", True)
                break
            consequence = "without a token" if opened else "under that route's rule"
            yield Finding(route.line, f"{_methods(taken)} requests to {route.pattern!r} are answered by {where} "
                                      f"{consequence}, not by this route", False)


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
                                          "its rule, so every token is refused", False)
                continue
            for scope in sorted(need.scopes | need.any_scopes):
                if any(c.isspace() for c in scope):
                    yield Finding(route.line, f"scope {scope!r} contains whitespace; a space-separated scope "
                                              "claim can never carry it", False)
            catalogs = [config.provider(n).scopes for n in sorted(names)]
            if any(c is None for c in catalogs):
                continue  # some provider did not declare its scopes: anything may be granted
            carried = frozenset().union(*catalogs)
            for scope in sorted(need.scopes - carried):
                yield Finding(route.line, f"route {route.pattern!r} requires scope {scope!r}, which none of the "
                                          f"providers {', '.join(sorted(names))} declares under 'scopes:'", False)
            if need.any_scopes and not need.any_scopes & carried:
                yield Finding(route.line, f"route {route.pattern!r} needs one of the scopes "
                                          f"{' '.join(sorted(need.any_scopes))}, none of which its providers declare",
                              False)


def plain_http_keys(config: GatewayConfig) -> Iterator[Finding]:
    """Keys fetched without TLS can be swapped by anyone on the path: right for a local dev issuer only."""
    for provider in config.providers:
        if provider.static_jwks is None and (provider.jwks_uri or provider.issuer).startswith("http://"):
            yield Finding(provider.line, f"provider {provider.name!r} fetches its signing keys over plain http "
                                         f"({provider.jwks_uri or provider.issuer}): fine for the local development "
                                         "issuer, never in production (use the provider's https issuer)", False)


EXPIRY_WARNING_DAYS = 14


def tls_expiry(config: GatewayConfig, now: float | None = None) -> Iterator[Finding]:
    """A certificate that expires soon: the rotation that should have replaced it has not happened."""
    if config.tls is None:
        return
    left = config.tls.not_after - (time.time() if now is None else now)
    if left < EXPIRY_WARNING_DAYS * 86400:
        yield Finding(config.tls.line, f"the certificate in {config.tls.cert_file} expires in {left / 86400:.1f} "
                                       f"days ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(config.tls.not_after))} "
                                       "UTC); replace the files (the gateway picks them up without a restart)",
                      False)


def lint(config: GatewayConfig) -> list[Finding]:
    return sorted([*shadowing(config.routes.routes), *unreachable_scopes(config), *plain_http_keys(config),
                   *tls_expiry(config)], key=lambda f: f.line)


def load_checked(load: Callable[[], GatewayConfig]) -> tuple[GatewayConfig, list[str]]:
    """Load and lint: lint errors refuse the config like load errors; returns (config, warnings)."""
    config = load()
    findings = lint(config)
    errors = [f.format(config.source) for f in findings if f.error]
    if errors:
        raise ConfigError(errors)
    return config, [f.format(config.source) for f in findings if not f.error]
