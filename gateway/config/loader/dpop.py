"""DPoP (RFC 9449) settings: a provider's `dpop:`, the top-level `dpop:` and `public_url:`."""
from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

from gateway.config.loader.sections import Problems, Section, is_http_url
from gateway.config.model import SUPPORTED_ALGORITHMS, DpopPolicy, DpopSettings, ProviderConfig
from gateway.config.yaml_source import LocatedMap

PROVIDER_DPOP_KEYS = ("algorithms", "max_age", "nonce")
DPOP_KEYS = ("replay_store", "replay_entries", "max_proof_bytes", "nonce_secret", "nonce_lifetime")
MIN_NONCE_SECRET_BYTES = 32
SECRET_HINT = ("set dpop.nonce_secret to the same secret of at least 32 bytes on every replica, e.g. "
               "nonce_secret: ${GATEWAY_DPOP_NONCE_SECRET} with the variable made by "
               "python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def read_provider_dpop(data: Any, where: str, line: int, problems: Problems) -> DpopPolicy | None:
    """`dpop: {algorithms, max_age, nonce}` of one provider; `dpop: true` takes the defaults."""
    if data is None or data is False:
        return None
    if data is True:
        return DpopPolicy()
    if not isinstance(data, LocatedMap):
        problems.add(line, f"{where} dpop must be true or a mapping of {', '.join(PROVIDER_DPOP_KEYS)}")
        return None
    section = Section(data, f"{where} dpop", problems, PROVIDER_DPOP_KEYS)
    defaults = DpopPolicy()
    algorithms = section.strings("algorithms", defaults.algorithms)
    for algorithm in algorithms:
        if algorithm not in SUPPORTED_ALGORITHMS:
            problems.add(section.line("algorithms"),
                         f"{where} dpop: proof algorithm {algorithm!r} is not supported; DPoP proofs are signed "
                         f"with a client's asymmetric key, so choose from {', '.join(SUPPORTED_ALGORITHMS)}")
    if section.has("algorithms") and not algorithms:
        problems.add(section.line("algorithms"), f"{where} dpop: algorithms must list at least one, e.g. [ES256]")
    return DpopPolicy(
        algorithms=tuple(dict.fromkeys(algorithms)) or defaults.algorithms,
        max_age=section.duration("max_age", defaults.max_age, 1.0, 3600.0),
        nonce=section.get("nonce", bool, defaults.nonce),
    )


def read_dpop_settings(top: Section, problems: Problems, providers: list[ProviderConfig]) -> DpopSettings:
    """The top-level `dpop:`; a nonce secret is required as soon as one provider asks for nonces."""
    defaults = DpopSettings()
    data = top.get("dpop", dict)
    settings = defaults
    line = top.line("dpop")
    if data is not None:
        section = Section(data, "dpop", problems, DPOP_KEYS)
        store = section.get("replay_store", str, defaults.replay_store)
        problem = replay_store_problem(store)
        if problem:
            problems.add(section.line("replay_store"), problem)
        secret = section.get("nonce_secret", str)
        if secret is not None and len(secret.encode()) < MIN_NONCE_SECRET_BYTES:
            problems.add(section.line("nonce_secret"), f"dpop.nonce_secret is too short; {SECRET_HINT}")
        settings = DpopSettings(
            replay_store=store,
            replay_entries=int(section.number("replay_entries", defaults.replay_entries, 1000, 100_000_000)),
            max_proof_bytes=int(section.number("max_proof_bytes", defaults.max_proof_bytes, 512, 16384)),
            nonce_secret=secret.encode() if secret else None,
            nonce_lifetime=section.duration("nonce_lifetime", defaults.nonce_lifetime, 5.0, 86400.0),
        )
        line = section.line("nonce_secret")
    asking = [p.name for p in providers if p.dpop is not None and p.dpop.nonce]
    if asking and settings.nonce_secret is None:
        problems.add(line, f"provider {asking[0]!r} has dpop nonce: true, but no nonce secret is configured; "
                           + SECRET_HINT)
    return settings


def replay_store_problem(store: str) -> str | None:
    """`memory`, or `redis://HOST[:PORT][/DB]` (`rediss://` for TLS); None when it is one of them."""
    if store == "memory":
        return None
    parts = urlsplit(store)
    database = parts.path.lstrip("/")
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or not _port_ok(parts) or parts.query \
            or parts.fragment or (database and not database.isdigit()):
        return (f"dpop.replay_store {store!r} must be 'memory' or a Redis URL like redis://127.0.0.1:6379/0 "
                "(every replica must name the same one)")
    return None


def _port_ok(parts: SplitResult) -> bool:
    """No port, or a number in range (urlsplit raises ValueError on `:x` or `:99999` only when asked)."""
    try:
        return parts.port is None or parts.port > 0
    except ValueError:
        return False


def read_public_url(top: Section, problems: Problems) -> str | None:
    """`public_url: https://api.example.com`: the origin clients address, without path, query or userinfo."""
    value = top.get("public_url", str)
    if value is None:
        return None
    parts = urlsplit(value)
    if not is_http_url(value) or parts.path not in ("", "/") or parts.query or parts.fragment \
            or "@" in parts.netloc or not _port_ok(parts):
        problems.add(top.line("public_url"), f"public_url {value!r} must be an origin like https://api.example.com "
                                             "(scheme, host and an optional port; no path)")
        return None
    return value.rstrip("/")
