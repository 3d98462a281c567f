"""The `providers:` section: issuer, audiences, algorithms, keys, claim rules of each identity provider."""
from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from gateway.auth.claim_path import ClaimPathError, parse_claim_path
from gateway.auth.jwks_cache import FetchError, build_keys
from gateway.auth.verifier import IDENTITY_HEADERS
from gateway.config.loader.dpop import read_provider_dpop
from gateway.config.loader.sections import Problems, Section, is_http_url
from gateway.config.model import DEFAULT_SCOPE_CLAIMS, SUPPORTED_ALGORITHMS, JwksPolicy, ProviderConfig
from gateway.config.yaml_source import LocatedList, LocatedMap
from gateway.proxy.headers import HOP_BY_HOP


JWKS_BOUNDS = {  # (minimum, maximum): no setting may turn the fetcher into a hot loop or disable its timeout
    "min_ttl": (0.1, 86400 * 7), "max_ttl": (0.1, 86400 * 30), "default_ttl": (0.1, 86400 * 7),
    "cooldown": (0.1, 3600), "timeout": (0.1, 60), "retry_min": (0.05, 3600), "retry_max": (0.05, 86400),
}


def _jwks_policy(data: Any, where: str, problems: Problems, line: int) -> JwksPolicy:
    if data is None:
        return JwksPolicy()
    if not isinstance(data, LocatedMap):
        problems.add(line, f"{where} must be a mapping")
        return JwksPolicy()
    section = Section(data, where, problems, tuple(f.name for f in fields(JwksPolicy)))
    defaults = JwksPolicy()
    values = {
        f.name: section.duration(f.name, getattr(defaults, f.name), *JWKS_BOUNDS[f.name])
        for f in fields(JwksPolicy)
        if f.name != "max_bytes"
    }
    values["max_bytes"] = int(section.number("max_bytes", defaults.max_bytes, 1024, 16 * 1024 * 1024))
    if values["retry_min"] > values["retry_max"]:
        problems.add(section.line("retry_min"), f"{where}: retry_min must not exceed retry_max")
    if values["min_ttl"] > values["max_ttl"]:
        problems.add(section.line("min_ttl"), f"{where}: min_ttl must not exceed max_ttl")
    return JwksPolicy(**values)


def _static_jwks(section: Section, base_dir: Path, problems: Problems):
    inline = section.get("jwks", dict)
    path = section.get("jwks_file", str)
    if inline is not None and path is not None:
        problems.add(section.line("jwks"), "give either 'jwks' or 'jwks_file', not both")
    if path is not None:
        file = (base_dir / path).resolve()
        try:
            inline = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.add(section.line("jwks_file"), f"cannot read jwks_file {str(file)!r}: {exc.strerror}")
            return None
        except ValueError as exc:
            problems.add(section.line("jwks_file"), f"jwks_file {str(file)!r} is not JSON: {exc}")
            return None
    if inline is not None:
        if not isinstance(inline, dict) or not isinstance(inline.get("keys"), list):
            problems.add(section.line("jwks" if section.has("jwks") else "jwks_file"),
                         "a JWKS is a mapping with a 'keys' list")
            return None
        try:
            return json.loads(json.dumps(inline, allow_nan=False))  # plain dicts, detached from YAML
        except (TypeError, ValueError):  # a YAML date, .nan or .inf has no JSON spelling
            problems.add(section.line("jwks"), "the JWKS must be plain JSON values (strings, numbers, lists, "
                                               "mappings); dates, .nan and .inf have no JSON spelling")
            return None
    return None


PROVIDER_KEYS = (
    "name", "issuer", "audience", "jwks_uri", "jwks", "jwks_file", "algorithms", "leeway",
    "scope_claims", "max_lifetime", "required_claims", "typ", "jwks_cache", "forward_claims", "scopes",
    "token_binding", "dpop",
)
TOKEN_BINDINGS = ("optional", "required")
_TCHAR = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
RESERVED_HEADERS = frozenset({
    "authorization", "host", "content-length", "content-type", "cookie", "x-request-id",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
}) | HOP_BY_HOP


def _forward_claims(section: Section, problems: Problems) -> tuple:
    """`{X-User-Email: email}` -> ((header, claim path), ...)."""
    data = section.get("forward_claims", dict, {})
    result = []
    for header, path_text in data.items():
        line = data.key_lines[header]
        if not isinstance(header, str) or not _TCHAR.match(header):
            problems.add(line, f"forward_claims: {header!r} is not a valid header name")
            continue
        if "_" in header:
            problems.add(line, f"forward_claims: {header!r} contains '_'; WSGI servers drop or merge such headers "
                               "with their '-' spelling, so use '-'")
            continue
        if header.lower() in RESERVED_HEADERS or header.lower() in {h.lower() for h in IDENTITY_HEADERS}:
            problems.add(line, f"forward_claims: {header!r} is reserved; choose another header name")
            continue
        try:
            result.append((header, parse_claim_path(path_text)))
        except ClaimPathError as exc:
            problems.add(line, f"forward_claims {header!r}: {exc}")
    return tuple(result)


def _claim_paths(section: Section, key: str, problems: Problems) -> list[tuple[str, ...]]:
    """A list of claim paths (`scope_claims`, `required_claims`), each parsed once."""
    paths = []
    for text in section.strings(key):
        try:
            paths.append(parse_claim_path(text))
        except ClaimPathError as exc:
            problems.add(section.line(key), str(exc))
    return paths


def _provider(data: Any, line: int, base_dir: Path, problems: Problems) -> ProviderConfig | None:
    if not isinstance(data, LocatedMap):
        problems.add(line, "each provider must be a mapping with name, issuer and audience")
        return None
    name = data.get("name") if isinstance(data.get("name"), str) else f"#{line}"
    where = f"provider {name!r}"
    section = Section(data, where, problems, PROVIDER_KEYS)
    section.get("name", str, required=True)
    issuer = section.get("issuer", str, required=True) or ""
    if section.has("issuer") and not issuer:
        problems.add(section.line("issuer"), f"{where}: issuer must not be empty; it must equal the tokens' iss")
    audiences = section.strings("audience", allow_single=True)
    if not audiences:
        problems.add(section.line("audience"),
                     f"{where} needs 'audience' (a string or a list): the API identifier tokens are issued for")
    jwks_uri = section.get("jwks_uri", str)
    if jwks_uri is not None and not is_http_url(jwks_uri):
        problems.add(section.line("jwks_uri"), f"jwks_uri {jwks_uri!r} must be an http(s) URL")
    static = _static_jwks(section, base_dir, problems)
    if static is not None and jwks_uri is not None:
        problems.add(section.line("jwks_uri"), "give either jwks_uri or static keys (jwks/jwks_file), not both")
    if jwks_uri is None and static is None and issuer and not is_http_url(issuer):
        problems.add(section.line("issuer"),
                     f"issuer {issuer!r} is not an http(s) URL, so its keys cannot be discovered; "
                     "set jwks_uri, jwks or jwks_file")
    algorithms = section.strings("algorithms", default=("RS256",))
    if section.has("algorithms") and not algorithms:
        problems.add(section.line("algorithms"), f"{where}: algorithms must list at least one, e.g. [RS256]")
    if static is not None:
        try:
            usable, skipped, _ = build_keys(static, algorithms or ("RS256",))
        except FetchError as exc:
            usable, skipped = {}, [str(exc)]
        if not usable:
            problems.add(section.line("jwks" if section.has("jwks") else "jwks_file"),
                         f"{where}: no usable signing key in the static JWKS ({'; '.join(skipped) or 'it is empty'})")
    for algorithm in algorithms:
        if algorithm not in SUPPORTED_ALGORITHMS:
            if algorithm.lower() == "none" or algorithm.startswith("HS"):
                why = "unsigned and shared-secret algorithms let anyone holding the public key forge tokens"
            else:
                why = "python-jose, the verification library, does not implement it"
            problems.add(section.line("algorithms"),
                         f"algorithm {algorithm!r} is not accepted ({why}); use one of {', '.join(SUPPORTED_ALGORITHMS)}")
    scope_claims = _claim_paths(section, "scope_claims", problems)
    max_lifetime = section.duration("max_lifetime", None, 1.0)
    typ = section.get("typ", str)
    if typ == "":
        problems.add(section.line("typ"), f"{where}: typ must not be empty; leave it out to accept any typ")
    required = _claim_paths(section, "required_claims", problems)
    token_binding = section.get("token_binding", str, "optional")
    if token_binding not in TOKEN_BINDINGS:
        problems.add(section.line("token_binding"), f"{where}: token_binding must be optional (bound tokens are "
                                                    "checked, unbound accepted) or required (unbound refused), "
                                                    f"not {token_binding!r}")
    return ProviderConfig(
        name=name,
        issuer=issuer,
        audiences=frozenset(audiences),
        algorithms=algorithms,
        jwks_uri=jwks_uri,
        static_jwks=static,
        leeway=section.duration("leeway", 30.0, 0.0, 300.0),
        scope_claims=tuple(scope_claims) or DEFAULT_SCOPE_CLAIMS,
        max_lifetime=max_lifetime,
        required_claims=tuple(required),
        typ=typ,
        jwks_policy=_jwks_policy(data.get("jwks_cache"), f"{where} jwks_cache", problems, section.line("jwks_cache")),
        forward_claims=_forward_claims(section, problems),
        line=data.line,
        scopes=frozenset(section.strings("scopes")) if section.has("scopes") else None,
        token_binding=token_binding,
        dpop=read_provider_dpop(data.get("dpop"), where, section.line("dpop"), problems),
    )


def read_providers(top: Section, base_dir: Path, problems: Problems) -> list[ProviderConfig]:
    """Every provider, with names and issuers unique (tokens are matched to a provider by `iss`)."""
    providers: list[ProviderConfig] = []
    provider_items = top.get("providers", list, LocatedList())
    for index, item in enumerate(provider_items):
        provider = _provider(item, provider_items.item_lines[index], base_dir, problems)
        if provider is None:
            continue
        for other in providers:
            if other.name == provider.name:
                problems.add(provider.line, f"provider name {provider.name!r} is used twice (also line {other.line})")
            elif other.issuer == provider.issuer:
                problems.add(provider.line, f"issuer {provider.issuer!r} is declared twice (also line {other.line}); "
                                            "tokens are matched to a provider by iss, so it must be unique")
        providers.append(provider)
    return providers
