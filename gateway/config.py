"""Typed, immutable configuration: built once from routes.yaml, never a raw dict after."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .route_table import RouteTable

# python-jose implements these; PS*/EdDSA are refused at load time with a hint.
SUPPORTED_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
DEFAULT_SCOPE_CLAIMS = (("scope",), ("scp",))


@dataclass(frozen=True)
class JwksPolicy:
    """How a provider's keys are fetched and kept (seconds and bytes)."""

    min_ttl: float = 60.0
    max_ttl: float = 86400.0
    default_ttl: float = 600.0
    cooldown: float = 30.0  # at most one unknown-kid refresh per cooldown
    timeout: float = 5.0
    max_bytes: int = 512 * 1024
    retry_min: float = 0.5
    retry_max: float = 60.0


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    issuer: str
    audiences: frozenset[str]
    algorithms: tuple[str, ...]
    jwks_uri: str | None  # None: discovery, unless static keys are given
    static_jwks: Mapping[str, Any] | None  # from `jwks` or `jwks_file`
    leeway: float
    scope_claims: tuple[tuple[str, ...], ...]
    max_lifetime: float | None
    required_claims: tuple[str, ...]
    typ: str | None
    jwks_policy: JwksPolicy
    forward_claims: tuple[tuple[str, tuple[str, ...]], ...]  # (header name, claim path)
    line: int


@dataclass(frozen=True)
class Limits:
    max_token_bytes: int = 8192
    max_field_size: int = 16384  # one header line
    max_line_size: int = 8190  # request line
    max_headers: int = 100


@dataclass(frozen=True)
class UpstreamConfig:
    url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 100
    keepalive: float = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    source: str
    listen_host: str
    listen_port: int
    upstream: UpstreamConfig
    realm: str
    forward_authorization: bool
    providers: tuple[ProviderConfig, ...]
    routes: RouteTable
    limits: Limits
    identity_headers: frozenset[str] = frozenset()  # configured claim headers, lower-case: stripped from clients

    def provider(self, name: str) -> ProviderConfig:
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)
