"""The sections around the rules: listen, upstream, limits, admin, reload, clients."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config.loader.sections import Problems, Section, is_http_url
from gateway.config.loader.upstream_tls import read_tls_settings, with_tls_context
from gateway.config.model import AdminConfig, ClientConfig, Limits, ReloadConfig, UpstreamConfig
from gateway.config.yaml_source import LocatedList, LocatedMap
from gateway.proxy.forwarded import parse_network


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); raises ValueError with a hint."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"listen address {value!r} must look like 127.0.0.1:8080 or [::1]:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _check_upstream_url(value: str) -> str | None:
    if value.startswith("unix:"):
        return None if len(value) > 5 else "a unix: upstream needs a socket path"
    if not is_http_url(value):
        return f"upstream {value!r} must be an http:// URL (or https://) like http://127.0.0.1:5000"
    if urlsplit(value).path not in ("", "/"):
        return "the upstream URL must not have a path; requests keep their own path"
    return None


def read_operations(top: Section, problems: Problems, public: tuple[str, int],
                admin: str | None) -> tuple[AdminConfig, ReloadConfig]:
    """`admin:` (its own listener, never the public port) and `reload:` (how edits are noticed)."""
    admin_cfg, reload_cfg = AdminConfig(required=False), ReloadConfig()
    admin_data = top.get("admin", dict)
    line = top.line("admin")
    if admin_data is not None:
        section = Section(admin_data, "admin", problems, ("listen",))
        admin = admin or section.get("listen", str)
        line = section.line("listen")
    if admin:
        try:
            admin_cfg = AdminConfig(*parse_listen(admin))
        except ValueError as exc:
            problems.add(line, f"admin: {exc}")
    wildcard = ("0.0.0.0", "::", "")
    if admin_cfg.port == public[1] != 0 and (admin_cfg.host == public[0] or {admin_cfg.host, public[0]} & set(wildcard)):
        problems.add(line, f"the admin listener {admin_cfg.host}:{admin_cfg.port} shares the public port; "
                           "health, readiness and metrics must never be reachable there (default 127.0.0.1:9901)")
    reload_data = top.get("reload", dict)
    if reload_data is not None:
        section = Section(reload_data, "reload", problems, ("watch", "interval"))
        interval = section.duration("interval", reload_cfg.interval, minimum=0.05)
        reload_cfg = ReloadConfig(watch=section.get("watch", bool, True), interval=interval)
    return admin_cfg, reload_cfg


def _host_setting(up: Section, problems: Problems) -> str:
    """`host: pass | upstream | NAME[:PORT]`: which Host header the upstream sees."""
    value = up.get("host", str, "pass")
    if value in ("pass", "upstream"):
        return value
    try:
        parts = urlsplit(f"//{value}")
        valid = bool(parts.hostname) and parts.netloc == value and "@" not in value \
            and not any(c.isspace() for c in value) and (parts.port or 0) >= 0
    except ValueError:
        valid = False
    if not valid:
        problems.add(up.line("host"), f"upstream host {value!r} must be 'pass', 'upstream' or a host like api.internal:8080")
        return "pass"
    return value


def read_clients(top: Section, problems: Problems) -> ClientConfig:
    """`clients:` how the public listener treats clients: trusted proxies and timeouts."""
    data = top.get("clients", dict)
    if data is None:
        return ClientConfig()
    section = Section(data, "clients", problems, tuple(f.name for f in fields(ClientConfig)))
    defaults = ClientConfig()
    networks = []
    items = section.get("trusted_proxies", list, LocatedList())
    for index, item in enumerate(items):
        try:
            networks.append(parse_network(str(item)))
        except ValueError as exc:
            problems.add(items.item_lines[index],
                         f"trusted_proxies item {item!r} is not an address or network like 10.0.0.0/8: {exc}")
    return ClientConfig(
        trusted_proxies=tuple(networks),
        idle_timeout=section.duration("idle_timeout", defaults.idle_timeout, minimum=0.1),
        body_timeout=section.duration("body_timeout", defaults.body_timeout, minimum=0.1),
        drain_timeout=section.duration("drain_timeout", defaults.drain_timeout),
    )


def read_upstream(top: Section, problems: Problems, override: str | None,
                  base_dir: Path = Path(".")) -> UpstreamConfig:
    """`upstream: URL` or a mapping with timeouts, pool, Host and TLS settings; `--upstream` replaces the URL."""
    upstream_data = top.get("upstream", (str, dict), required=override is None)
    upstream_cfg = UpstreamConfig(url="http://127.0.0.1:5000")
    up = None
    if isinstance(upstream_data, LocatedMap):
        known = tuple(f.name for f in fields(UpstreamConfig) if f.name != "tls")  # tls: built below, not a key
        up = Section(upstream_data, "upstream", problems, known)
        defaults = UpstreamConfig(url="")
        upstream_cfg = UpstreamConfig(
            url=up.get("url", str, required=True) or "",
            connect_timeout=up.duration("connect_timeout", defaults.connect_timeout, positive=True),
            read_timeout=up.duration("read_timeout", defaults.read_timeout, positive=True),
            pool_size=int(up.number("pool_size", defaults.pool_size, minimum=1)),
            keepalive=up.duration("keepalive", defaults.keepalive),
            host=_host_setting(up, problems),
            **read_tls_settings(up, base_dir, problems),
        )
    elif isinstance(upstream_data, str):
        upstream_cfg = UpstreamConfig(url=upstream_data)
    if override:
        upstream_cfg = UpstreamConfig(**{**upstream_cfg.__dict__, "url": override})
    error = _check_upstream_url(upstream_cfg.url)
    if error:
        problems.add(top.line("upstream"), error)
        return upstream_cfg
    return with_tls_context(upstream_cfg, problems, up.line if up is not None else lambda _: top.line("upstream"))


def read_limits(top: Section, problems: Problems) -> Limits:
    limits_data = top.get("limits", dict)
    limits = Limits()
    if limits_data is not None:
        lim = Section(limits_data, "limits", problems, tuple(f.name for f in fields(Limits)))
        limits = Limits(**{f.name: int(lim.number(f.name, getattr(limits, f.name), minimum=64))
                           for f in fields(Limits)})
    return limits
