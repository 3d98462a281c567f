"""Typed, immutable configuration: built once from routes.yaml, never a raw dict after."""
from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # the model holds a RouteTable but never calls it: no runtime import upwards
    from gateway.pipeline.route_table import RouteTable

# python-jose implements these; PS*/EdDSA are refused at load time with a hint.
SUPPORTED_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
DEFAULT_SCOPE_CLAIMS = (("scope",),)  # RFC 8693/9068; providers using scp or permissions say so (README)


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
class DpopPolicy:
    """A provider's `dpop:`: its DPoP-bound tokens (RFC 9449) are accepted with a proof made like this."""

    algorithms: tuple[str, ...] = ("ES256", "RS256")  # proof signature algorithms (asymmetric only)
    max_age: float = 60.0  # seconds a proof's iat may lie in the past (plus the provider's leeway)
    nonce: bool = False  # proofs must carry a nonce this gateway issued (DPoP-Nonce)


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
    required_claims: tuple[tuple[str, ...], ...]  # claim paths that must be present and not null
    typ: str | None
    jwks_policy: JwksPolicy
    forward_claims: tuple[tuple[str, tuple[str, ...]], ...]  # (header name, claim path)
    line: int
    scopes: frozenset[str] | None = None  # the scopes its tokens can carry, if declared (for `check`)
    token_binding: str = "optional"  # "required": tokens without a `cnf` binding are refused (RFC 8705, RFC 9449)
    dpop: DpopPolicy | None = None  # None: DPoP-bound tokens (cnf.jkt) of this provider are refused


@dataclass(frozen=True)
class Limits:
    max_token_bytes: int = 8192
    max_field_size: int = 16384  # one header line
    max_line_size: int = 8190  # request line
    max_headers: int = 100
    token_cache_entries: int = 20_000  # verified tokens kept; about 1.5 KB each
    max_body_bytes: int = 1 << 30  # request body, declared or streamed: 413 beyond
    max_ws_message_bytes: int = 4 << 20  # one WebSocket message, either direction: closed with 1009


@dataclass(frozen=True)
class UpstreamConfig:
    url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 100
    keepalive: float = 1.0  # idle seconds before a pooled connection is dropped: below gunicorn's default 2 s
    host: str = "pass"  # Host sent upstream: "pass" (the client's), "upstream" (the URL's), or a literal
    # https upstreams only (paths resolved against the config file's folder):
    ca_file: str | None = None  # verify the upstream's certificate against these CAs instead of the system's
    server_name: str | None = None  # the name its certificate must carry (and SNI), if not the URL's host
    client_cert: str | None = None  # PEM certificate presented to an upstream that requires mutual TLS
    client_key: str | None = None  # its PEM private key, unless client_cert holds both
    # Built once at load from the four above, shared by every client of this upstream (lean pool,
    # aiohttp, WebSockets); None for http:// and unix: upstreams.
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ClientConfig:
    """How the public listener treats clients (seconds)."""

    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # may set X-Forwarded-*
    idle_timeout: float = 20.0  # a connection must deliver a complete request head within this
    body_timeout: float = 30.0  # longest silence while a request body is being received: 408
    drain_timeout: float = 10.0  # SIGTERM: in-flight requests get this long to finish


@dataclass(frozen=True)
class AdminConfig:
    """The operator's listener (health, readiness, metrics): never the public port."""

    host: str = "127.0.0.1"
    port: int = 9901
    required: bool = True  # False for the unconfigured default: if 9901 is taken, serve on without it


@dataclass(frozen=True)
class ReloadConfig:
    """How a running gateway notices a new routes.yaml; SIGHUP always reloads."""

    watch: bool = True
    interval: float = 1.0  # seconds between polls of the file


CLIENT_CERT_MODES = ("none", "optional", "required")
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")


@dataclass(frozen=True)
class TlsConfig:
    """`tls:`: the public listener speaks https only; the files are re-read when they change."""

    cert_file: str  # absolute paths; PEM, leaf first, then intermediates
    key_file: str
    client_ca_file: str | None = None  # clients' certificates must chain to these
    client_certs: str = "none"  # none | optional | required
    min_version: str = "TLSv1.2"
    not_after: float = 0.0  # the leaf's expiry when the config was loaded (epoch seconds), for `check`
    line: int = 0


@dataclass(frozen=True)
class DpopSettings:
    """The top-level `dpop:`: what every provider's DPoP checks share."""

    replay_store: str = "memory"  # or redis://HOST:PORT/DB, shared by every replica
    replay_entries: int = 200_000  # bound of the memory store: proofs remembered at once
    max_proof_bytes: int = 4096  # a longer DPoP header is refused before it is parsed
    nonce_secret: bytes | None = field(default=None, repr=False)  # the replicas' shared nonce secret
    nonce_lifetime: float = 300.0  # a nonce is good for its window of this many seconds and the next


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
    allow_path_params: bool = False  # pass ';' in paths (only for upstreams that route on matrix parameters)
    admin: AdminConfig = AdminConfig(required=False)
    reload: ReloadConfig = ReloadConfig()
    clients: ClientConfig = ClientConfig()
    tls: TlsConfig | None = None  # None: plain http
    dpop: DpopSettings = DpopSettings()
    public_url: str | None = None  # scheme://host[:port] clients address, for DPoP htu checks

    def provider(self, name: str) -> ProviderConfig:
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)
