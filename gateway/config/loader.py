"""routes.yaml -> GatewayConfig, reporting every problem with file:line and a hint.

A misspelt key must never loosen a rule (`acess:` would otherwise leave a
route with no access rule), so unknown keys, wrong types and impossible
routes are all errors and the gateway refuses to start.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.auth import requirements
from gateway.auth.claim_path import ClaimPathError, parse_claim_path
from gateway.config.model import (
    DEFAULT_SCOPE_CLAIMS,
    SUPPORTED_ALGORITHMS,
    AdminConfig,
    ClientConfig,
    GatewayConfig,
    JwksPolicy,
    Limits,
    ProviderConfig,
    ReloadConfig,
    UpstreamConfig,
)
from gateway.pipeline.cors import CorsPolicy
from gateway.proxy.forwarded import parse_network
from gateway.proxy.headers import HOP_BY_HOP
from gateway.auth.jwks_cache import FetchError, build_keys
from gateway.pipeline.route_table import PatternError, Route, RouteTable, compile_pattern
from gateway.auth.token_sources import HEADER_ONLY, parse_token_source
from gateway.auth.verifier import IDENTITY_HEADERS
from gateway.config.yaml_source import LocatedList, LocatedMap, YamlProblem, environment, load_located

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
ACCESS_WORDS = {
    "public": requirements.Public(),
    "authenticated": requirements.Authenticated(),
    "optional": requirements.Optional(),
}


class ConfigError(Exception):
    """Every problem found, each already formatted as `file:line: message`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, line: int, message: str) -> None:
        self.items.append(f"{self.source}:{line}: {message}")


class _Section:
    """Typed access to one YAML mapping; unknown keys are reported on `done()`."""

    def __init__(self, data: LocatedMap, where: str, problems: _Problems, known: tuple[str, ...]):
        self.data = data
        self.where = where
        self.problems = problems
        self.known = known
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                problems.add(
                    data.key_lines[key],
                    f"unknown key {key!r} in {where}{suggestion} "
                    f"(known keys: {', '.join(known)})",
                )

    def line(self, key: str) -> int:
        return self.data.key_lines.get(key, self.data.line)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type | tuple, default: Any = None, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                self.problems.add(self.data.line, f"{self.where} needs {key!r}")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, float) and not math.isfinite(value):
            self.problems.add(self.line(key), f"{key!r} in {self.where} must be a finite number")
            return default
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join(_type_name(k) for k in kinds)
            self.problems.add(
                self.line(key), f"{key!r} in {self.where} must be {names}, not {_type_name(type(value))}"
            )
            return default
        return value

    def number(self, key: str, default: float, minimum: float = 0.0, maximum: float = math.inf) -> float:
        value = self.get(key, float, default)
        if not minimum <= value <= maximum:
            bound = f"between {minimum:g} and {maximum:g}" if maximum < math.inf else f"at least {minimum:g}"
            self.problems.add(self.line(key), f"{key!r} in {self.where} must be {bound}")
            return default
        return value

    def strings(self, key: str, default: tuple = (), allow_single: bool = False) -> tuple[str, ...]:
        """A list of non-empty strings (or one string where `allow_single`)."""
        value = self.get(key, (list, str) if allow_single else list, None)
        if value is None:
            return default
        items = [value] if isinstance(value, str) else value
        result = []
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item:
                line = value.item_lines[index] if isinstance(value, LocatedList) else self.line(key)
                self.problems.add(line, f"every item of {key!r} in {self.where} must be a non-empty string")
                continue
            result.append(item)
        return tuple(result)


def _type_name(kind: type) -> str:
    return {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list",
        LocatedList: "a list",
        dict: "a mapping",
        LocatedMap: "a mapping",
        type(None): "empty",
    }.get(kind, kind.__name__)


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


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
    if not _is_http_url(value):
        return f"upstream {value!r} must be an http:// URL like http://127.0.0.1:5000"
    if urlsplit(value).path not in ("", "/"):
        return "the upstream URL must not have a path; requests keep their own path"
    return None


JWKS_BOUNDS = {  # (minimum, maximum): no setting may turn the fetcher into a hot loop or disable its timeout
    "min_ttl": (0.1, 86400 * 7), "max_ttl": (0.1, 86400 * 30), "default_ttl": (0.1, 86400 * 7),
    "cooldown": (0.1, 3600), "timeout": (0.1, 60), "retry_min": (0.05, 3600), "retry_max": (0.05, 86400),
}


def _jwks_policy(data: Any, where: str, problems: _Problems, line: int) -> JwksPolicy:
    if data is None:
        return JwksPolicy()
    if not isinstance(data, LocatedMap):
        problems.add(line, f"{where} must be a mapping")
        return JwksPolicy()
    section = _Section(data, where, problems, tuple(f.name for f in fields(JwksPolicy)))
    defaults = JwksPolicy()
    values = {
        f.name: section.number(f.name, getattr(defaults, f.name), *JWKS_BOUNDS[f.name])
        for f in fields(JwksPolicy)
        if f.name != "max_bytes"
    }
    values["max_bytes"] = int(section.number("max_bytes", defaults.max_bytes, 1024, 16 * 1024 * 1024))
    if values["retry_min"] > values["retry_max"]:
        problems.add(section.line("retry_min"), f"{where}: retry_min must not exceed retry_max")
    if values["min_ttl"] > values["max_ttl"]:
        problems.add(section.line("min_ttl"), f"{where}: min_ttl must not exceed max_ttl")
    return JwksPolicy(**values)


def _static_jwks(section: _Section, base_dir: Path, problems: _Problems):
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
        return json.loads(json.dumps(inline))  # plain dicts, detached from YAML
    return None


PROVIDER_KEYS = (
    "name", "issuer", "audience", "jwks_uri", "jwks", "jwks_file", "algorithms", "leeway",
    "scope_claims", "max_lifetime", "required_claims", "typ", "jwks_cache", "forward_claims", "scopes",
)
_TCHAR = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
RESERVED_HEADERS = frozenset({
    "authorization", "host", "content-length", "content-type", "cookie", "x-request-id",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
}) | HOP_BY_HOP


def _forward_claims(section: _Section, problems: _Problems) -> tuple:
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


CORS_KEYS = ("allow_origins", "allow_methods", "allow_headers", "expose_headers", "allow_credentials", "max_age")


def _cors(data: Any, line: int, problems: _Problems, default: CorsPolicy | None) -> CorsPolicy | None:
    if data is True:
        if default is None:
            problems.add(line, "cors: true needs a top-level 'cors:' policy to use; or give the policy here")
        return default
    if data is False or data is None:
        return None
    if not isinstance(data, LocatedMap):
        problems.add(line, "cors must be true, false, or a mapping of " + ", ".join(CORS_KEYS))
        return None
    section = _Section(data, "cors", problems, CORS_KEYS)
    origins = section.strings("allow_origins")
    if not origins:
        problems.add(data.line, "cors needs allow_origins (exact origins like https://app.example.com, or '*')")
    credentials = section.get("allow_credentials", bool, False)
    if credentials and "*" in origins:
        problems.add(section.line("allow_credentials"),
                     "allow_credentials cannot be combined with allow_origins '*'; browsers refuse it")
    for origin in origins:
        if origin != "*" and (not _is_http_url(origin) or urlsplit(origin).path):
            problems.add(section.line("allow_origins"), f"origin {origin!r} must look like https://app.example.com")
    methods = tuple(m.upper() for m in section.strings("allow_methods", ("GET", "POST", "PUT", "PATCH", "DELETE")))
    return CorsPolicy(
        allow_origins=frozenset(origins),
        allow_methods=methods,
        allow_headers=section.strings("allow_headers", ("Authorization", "Content-Type")),
        expose_headers=section.strings("expose_headers"),
        allow_credentials=credentials,
        max_age=int(section.number("max_age", 600)),
    )


def _provider(data: Any, line: int, base_dir: Path, problems: _Problems) -> ProviderConfig | None:
    if not isinstance(data, LocatedMap):
        problems.add(line, "each provider must be a mapping with name, issuer and audience")
        return None
    name = data.get("name") if isinstance(data.get("name"), str) else f"#{line}"
    where = f"provider {name!r}"
    section = _Section(data, where, problems, PROVIDER_KEYS)
    section.get("name", str, required=True)
    issuer = section.get("issuer", str, required=True) or ""
    if section.has("issuer") and not issuer:
        problems.add(section.line("issuer"), f"{where}: issuer must not be empty; it must equal the tokens' iss")
    audiences = section.strings("audience", allow_single=True)
    if not audiences:
        problems.add(section.line("audience"),
                     f"{where} needs 'audience' (a string or a list): the API identifier tokens are issued for")
    jwks_uri = section.get("jwks_uri", str)
    if jwks_uri is not None and not _is_http_url(jwks_uri):
        problems.add(section.line("jwks_uri"), f"jwks_uri {jwks_uri!r} must be an http(s) URL")
    static = _static_jwks(section, base_dir, problems)
    if static is not None and jwks_uri is not None:
        problems.add(section.line("jwks_uri"), "give either jwks_uri or static keys (jwks/jwks_file), not both")
    if jwks_uri is None and static is None and issuer and not _is_http_url(issuer):
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
    scope_claims = []
    for text in section.strings("scope_claims", default=("scope", "scp")):
        try:
            scope_claims.append(parse_claim_path(text))
        except ClaimPathError as exc:
            problems.add(section.line("scope_claims"), str(exc))
    max_lifetime = section.number("max_lifetime", None, 1.0) if section.has("max_lifetime") else None
    typ = section.get("typ", str)
    if typ == "":
        problems.add(section.line("typ"), f"{where}: typ must not be empty; leave it out to accept any typ")
    required = []
    for text in section.strings("required_claims"):
        try:
            required.append(parse_claim_path(text))
        except ClaimPathError as exc:
            problems.add(section.line("required_claims"), str(exc))
    return ProviderConfig(
        name=name,
        issuer=issuer,
        audiences=frozenset(audiences),
        algorithms=algorithms,
        jwks_uri=jwks_uri,
        static_jwks=static,
        leeway=section.number("leeway", 30.0, 0.0, 300.0),
        scope_claims=tuple(scope_claims) or DEFAULT_SCOPE_CLAIMS,
        max_lifetime=max_lifetime,
        required_claims=tuple(required),
        typ=typ,
        jwks_policy=_jwks_policy(data.get("jwks_cache"), f"{where} jwks_cache", problems, section.line("jwks_cache")),
        forward_claims=_forward_claims(section, problems),
        line=data.line,
        scopes=frozenset(section.strings("scopes")) if section.has("scopes") else None,
    )


def _claim_condition(path_text: Any, spec: Any, line: int, problems: _Problems):
    try:
        path = parse_claim_path(path_text)
    except ClaimPathError as exc:
        problems.add(line, str(exc))
        return None
    scalar = (str, int, float, bool)
    if isinstance(spec, scalar):
        return requirements.ClaimCondition(path, "equals", (spec,))
    if isinstance(spec, LocatedMap) and len(spec) == 1:
        (kind, value), = spec.items()
        if kind == "present" and isinstance(value, bool):
            return requirements.ClaimCondition(path, "present", present=value)
        if kind == "equals" and isinstance(value, scalar):
            return requirements.ClaimCondition(path, "equals", (value,))
        if kind in ("one_of", "all_of") and isinstance(value, list) and value \
                and all(isinstance(v, scalar) for v in value):
            return requirements.ClaimCondition(path, kind, tuple(value))
    problems.add(line,
                 f"claim condition for {path_text!r} must be a value, or one of "
                 "{equals: V}, {one_of: [..]}, {all_of: [..]}, {present: true|false}")
    return None


ACCESS_KEYS = ("scopes", "any_scopes", "claims", "providers", "any_of", "all_of")


def _access(data: Any, line: int, problems: _Problems, provider_names: set[str], nested: bool = False):
    if isinstance(data, str):
        rule = ACCESS_WORDS.get(data)
        if rule is None or (nested and rule.token is not requirements.TokenNeed.REQUIRED):
            allowed = "authenticated or a mapping" if nested else "public, authenticated, optional or a mapping"
            problems.add(line, f"access {data!r} is not one of: {allowed}")
            return None
        return rule
    if not isinstance(data, LocatedMap) or not data:
        problems.add(line, "access must be public, authenticated, optional, or a mapping of "
                           "scopes / any_scopes / claims / providers / any_of / all_of")
        return None
    section = _Section(data, "access", problems, ACCESS_KEYS)
    parts: list[requirements.AccessRule] = []
    for key in ("any_of", "all_of"):
        items = section.get(key, list)
        if items is None:
            continue
        if not items:
            problems.add(section.line(key), f"{key} needs at least one rule")
            continue
        rules = tuple(_access(item, items.item_lines[i], problems, provider_names, nested=True)
                      for i, item in enumerate(items))
        if None not in rules:
            parts.append(requirements.AnyOf(rules) if key == "any_of" else requirements.AllOf(rules))
    conditions = []
    for key in ("scopes", "any_scopes", "claims"):
        if section.has(key) and isinstance(data[key], (list, dict)) and not data[key]:
            problems.add(section.line(key), f"{key} is empty, which would allow any valid token; "
                                            "list what is required, or write access: authenticated")
    for key in ("scopes", "any_scopes"):
        for scope in section.strings(key):
            if any(c.isspace() for c in scope):
                problems.add(section.line(key), f"scope {scope!r} contains whitespace and can never be granted; "
                                                "list scopes as separate items")
    claims = section.get("claims", dict, {})
    for path_text, spec in claims.items():
        condition = _claim_condition(path_text, spec, claims.key_lines[path_text], problems)
        if condition is not None:
            conditions.append(condition)
    providers = section.strings("providers") if section.has("providers") else None
    for name in providers or ():
        if name not in provider_names:
            problems.add(section.line("providers"), f"access names provider {name!r}, which is not configured")
    requirement = requirements.Requirement(
        scopes=frozenset(section.strings("scopes")),
        any_scopes=frozenset(section.strings("any_scopes")),
        claims=tuple(conditions),
        providers=frozenset(providers) if providers is not None else None,
    )
    if requirement != requirements.Requirement() or not parts:
        parts.insert(0, requirement)
    return parts[0] if len(parts) == 1 else requirements.AllOf(tuple(parts))


ROUTE_KEYS = ("path", "methods", "access", "providers", "cors", "token_from")


def _route(data: Any, line: int, problems: _Problems, provider_names: set[str],
           default_cors: CorsPolicy | None) -> Route | None:
    if not isinstance(data, LocatedMap):
        problems.add(line, "each route must be a mapping with path and access")
        return None
    section = _Section(data, "route", problems, ROUTE_KEYS)
    pattern = section.get("path", str, required=True)
    try:
        regex = compile_pattern(pattern) if pattern is not None else None
    except PatternError as exc:
        problems.add(section.line("path"), f"path {pattern!r}: {exc}")
        regex = None
    methods = None
    if section.has("methods"):
        names = section.strings("methods")
        bad = [m for m in names if m.upper() not in HTTP_METHODS]
        if bad:
            problems.add(section.line("methods"), f"unknown HTTP method(s) {', '.join(bad)}")
        if not names:
            problems.add(section.line("methods"), "methods must list at least one method, or be left out for all")
        methods = {m.upper() for m in names}
        if "GET" in methods:
            methods.add("HEAD")  # as Flask does: HEAD is GET without the body
        methods = frozenset(methods)
    if not section.has("access"):
        problems.add(data.line, "route needs 'access' (public, authenticated, optional, or a rule mapping); "
                                "there is no default, so a typo cannot make a route public")
        access = None
    else:
        access = _access(data["access"], section.line("access"), problems, provider_names)
    providers = section.strings("providers") if section.has("providers") else None
    for name in providers or ():
        if name not in provider_names:
            problems.add(section.line("providers"), f"route names provider {name!r}, which is not configured")
    cors = _cors(data.get("cors"), section.line("cors"), problems, default_cors)
    token_from = _token_from(section, problems, access)
    if regex is None or access is None:
        return None
    return Route(pattern, regex, methods, access, frozenset(providers) if providers is not None else None,
                 data.line, cors, token_from)


def _token_from(section: _Section, problems: _Problems, access) -> tuple:
    """`token_from: [header, query:access_token, cookie:session]`; default: the header only."""
    if not section.has("token_from"):
        return HEADER_ONLY
    value = section.data["token_from"]
    texts = section.strings("token_from")
    sources = []
    for index, text in enumerate(texts):
        line = value.item_lines[index] if isinstance(value, LocatedList) else section.line("token_from")
        try:
            source = parse_token_source(text)
        except ValueError as exc:
            problems.add(line, str(exc))
            continue
        if source in sources:
            problems.add(line, f"token_from lists {text!r} twice")
        sources.append(source)
    if isinstance(value, LocatedList) and not value:
        problems.add(section.line("token_from"), "token_from needs at least one place (header, query:NAME, cookie:NAME)")
    if access is not None and access.token is requirements.TokenNeed.NONE:
        problems.add(section.line("token_from"), "token_from has no effect on a public route; remove it")
    return tuple(dict.fromkeys(sources)) or HEADER_ONLY


def _shadowed(routes: list[Route], problems: _Problems) -> None:
    for index, route in enumerate(routes):
        for earlier in routes[:index]:
            same_path = earlier.pattern == route.pattern or earlier.pattern in ("/**",)
            covers = earlier.methods is None or (route.methods is not None and route.methods <= earlier.methods)
            if same_path and covers:
                problems.add(route.line,
                             f"route {route.pattern!r} can never match: the route at line {earlier.line} "
                             f"({earlier.pattern!r}) already takes every request it would get; "
                             "remove it or move it above")
                break


TOP_KEYS = ("listen", "upstream", "realm", "forward_authorization", "providers", "routes", "limits", "cors",
            "admin", "reload", "clients", "allow_path_params")


def _operations(top: _Section, problems: _Problems, public: tuple[str, int],
                admin: str | None) -> tuple[AdminConfig, ReloadConfig]:
    """`admin:` (its own listener, never the public port) and `reload:` (how edits are noticed)."""
    admin_cfg, reload_cfg = AdminConfig(required=False), ReloadConfig()
    admin_data = top.get("admin", dict)
    line = top.line("admin")
    if admin_data is not None:
        section = _Section(admin_data, "admin", problems, ("listen",))
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
        section = _Section(reload_data, "reload", problems, ("watch", "interval"))
        interval = section.number("interval", reload_cfg.interval, minimum=0.05)
        reload_cfg = ReloadConfig(watch=section.get("watch", bool, True), interval=interval)
    return admin_cfg, reload_cfg


def _host_setting(up: _Section, problems: _Problems) -> str:
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


def _clients(top: _Section, problems: _Problems) -> ClientConfig:
    """`clients:` how the public listener treats clients: trusted proxies and timeouts."""
    data = top.get("clients", dict)
    if data is None:
        return ClientConfig()
    section = _Section(data, "clients", problems, tuple(f.name for f in fields(ClientConfig)))
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
        idle_timeout=section.number("idle_timeout", defaults.idle_timeout, minimum=0.1),
        body_timeout=section.number("body_timeout", defaults.body_timeout, minimum=0.1),
        drain_timeout=section.number("drain_timeout", defaults.drain_timeout),
    )


def build_config(data: Any, source: str, base_dir: Path,
                 listen: str | None = None, upstream: str | None = None,
                 admin: str | None = None) -> GatewayConfig:
    problems = _Problems(source)
    if not isinstance(data, LocatedMap):
        problems.add(getattr(data, "line", 1), "the file must be a mapping with providers and routes")
        raise ConfigError(problems.items)
    top = _Section(data, "the top level", problems, TOP_KEYS)

    listen_text = listen or top.get("listen", str, "127.0.0.1:8080")
    try:
        host, port = parse_listen(listen_text)
    except ValueError as exc:
        problems.add(top.line("listen"), str(exc))
        host, port = "127.0.0.1", 8080

    upstream_data = top.get("upstream", (str, dict), required=upstream is None)
    upstream_cfg = UpstreamConfig(url="http://127.0.0.1:5000")
    if isinstance(upstream_data, LocatedMap):
        known = tuple(f.name for f in fields(UpstreamConfig))
        up = _Section(upstream_data, "upstream", problems, known)
        defaults = UpstreamConfig(url="")
        upstream_cfg = UpstreamConfig(
            url=up.get("url", str, required=True) or "",
            connect_timeout=up.number("connect_timeout", defaults.connect_timeout),
            read_timeout=up.number("read_timeout", defaults.read_timeout),
            pool_size=int(up.number("pool_size", defaults.pool_size, minimum=1)),
            keepalive=up.number("keepalive", defaults.keepalive),
            host=_host_setting(up, problems),
        )
    elif isinstance(upstream_data, str):
        upstream_cfg = UpstreamConfig(url=upstream_data)
    if upstream:
        upstream_cfg = UpstreamConfig(**{**upstream_cfg.__dict__, "url": upstream})
    error = _check_upstream_url(upstream_cfg.url)
    if error:
        problems.add(top.line("upstream"), error)

    limits_data = top.get("limits", dict)
    limits = Limits()
    if limits_data is not None:
        lim = _Section(limits_data, "limits", problems, tuple(f.name for f in fields(Limits)))
        limits = Limits(**{f.name: int(lim.number(f.name, getattr(limits, f.name), minimum=64))
                           for f in fields(Limits)})

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
    names = {p.name for p in providers}

    default_cors = _cors(data.get("cors"), top.line("cors"), problems, None) if top.has("cors") else None
    routes: list[Route] = []
    route_items = top.get("routes", list, required=True) or LocatedList()
    if isinstance(route_items, LocatedList) and not route_items:
        problems.add(top.line("routes"), "routes is empty: every request would get 404")
    for index, item in enumerate(route_items):
        route = _route(item, route_items.item_lines[index], problems, names, default_cors)
        if route is not None:
            routes.append(route)
    _shadowed(routes, problems)
    if not providers:
        for route in routes:
            if route.access.token is not requirements.TokenNeed.NONE:
                problems.add(route.line, f"route {route.pattern!r} needs tokens but no provider is configured; "
                                         "add one under 'providers:'")
                break
    admin_cfg, reload_cfg = _operations(top, problems, (host, port), admin)
    clients_cfg = _clients(top, problems)

    realm = top.get("realm", str, "api")
    forward_authorization = top.get("forward_authorization", bool, False)
    allow_path_params = top.get("allow_path_params", bool, False)
    if problems.items:
        raise ConfigError(problems.items)
    return GatewayConfig(
        source=source,
        listen_host=host,
        listen_port=port,
        upstream=upstream_cfg,
        realm=realm,
        forward_authorization=forward_authorization,
        allow_path_params=allow_path_params,
        providers=tuple(providers),
        routes=RouteTable(tuple(routes)),
        limits=limits,
        identity_headers=frozenset(h.lower() for p in providers for h, _ in p.forward_claims),
        admin=admin_cfg,
        reload=reload_cfg,
        clients=clients_cfg,
    )


def load_config(path: str | Path, listen: str | None = None, upstream: str | None = None,
                dotenv: Path | None = Path(".env"), admin: str | None = None) -> GatewayConfig:
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
    return build_config(data, source, path.parent, listen=listen, upstream=upstream, admin=admin)

