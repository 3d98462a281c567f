"""routes.yaml -> GatewayConfig: every section read, every problem reported with file:line and a hint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config.loader.dpop import read_dpop_settings, read_public_url
from gateway.config.loader.providers import PROVIDER_KEYS, read_providers
from gateway.config.loader.routes import ACCESS_KEYS, ROUTE_KEYS, read_routes
from gateway.config.loader.sections import ConfigError, Problems, Section
from gateway.config.loader.settings import parse_listen, read_clients, read_operations, read_limits, read_upstream
from gateway.config.loader.tls import read_tls
from gateway.config.model import GatewayConfig
from gateway.config.yaml_source import LocatedMap, YamlProblem, environment, load_located

TOP_KEYS = ("listen", "upstream", "realm", "forward_authorization", "providers", "routes", "limits", "cors",
            "admin", "reload", "clients", "allow_path_params", "tls", "dpop", "public_url")


def build_config(data: Any, source: str, base_dir: Path,
                 listen: str | None = None, upstream: str | None = None,
                 admin: str | None = None, tls_cert: str | None = None, tls_key: str | None = None) -> GatewayConfig:
    problems = Problems(source)
    if not isinstance(data, LocatedMap):
        problems.add(getattr(data, "line", 1), "the file must be a mapping with providers and routes")
        raise ConfigError(problems.items)
    top = Section(data, "the top level", problems, TOP_KEYS, {
        **{key: "under a route's 'access:'" for key in ACCESS_KEYS},
        **{key: "to a provider under 'providers:'" for key in PROVIDER_KEYS},
        **{key: "to a route under 'routes:'" for key in ROUTE_KEYS}})

    listen_text = listen or top.get("listen", str, "127.0.0.1:8080")
    try:
        host, port = parse_listen(listen_text)
    except ValueError as exc:
        problems.add(top.line("listen"), str(exc))
        host, port = "127.0.0.1", 8080
    providers = read_providers(top, base_dir, problems)
    admin_cfg, reload_cfg = read_operations(top, problems, (host, port), admin)
    sections = dict(  # read in file-independent order; each adds its own problems
        upstream=read_upstream(top, problems, upstream, base_dir),
        limits=read_limits(top, problems),
        routes=read_routes(top, problems, providers),
        clients=read_clients(top, problems),
        tls=read_tls(top, problems, base_dir, tls_cert, tls_key),
        dpop=read_dpop_settings(top, problems, providers),
        public_url=read_public_url(top, problems),
        realm=top.get("realm", str, "api"),
        forward_authorization=top.get("forward_authorization", bool, False),
        allow_path_params=top.get("allow_path_params", bool, False),
    )
    if problems.items:
        raise ConfigError(problems.items)
    return GatewayConfig(
        source=source,
        listen_host=host,
        listen_port=port,
        providers=tuple(providers),
        identity_headers=frozenset(h.lower() for p in providers for h, _ in p.forward_claims),
        admin=admin_cfg,
        reload=reload_cfg,
        **sections,
    )


def load_config(path: str | Path, listen: str | None = None, upstream: str | None = None,
                dotenv: Path | None = Path(".env"), admin: str | None = None,
                tls_cert: str | None = None, tls_key: str | None = None) -> GatewayConfig:
    """Read, expand, validate and type a routes.yaml; raises ConfigError listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the config file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: the config file is not UTF-8 text"]) from None
    try:
        data = load_located(text, environment(dotenv))
    except YamlProblem as exc:
        raise ConfigError([f"{source}:{exc.line}: {exc.message}"]) from None
    return build_config(data, source, path.parent, listen=listen, upstream=upstream, admin=admin,
                        tls_cert=tls_cert, tls_key=tls_key)
