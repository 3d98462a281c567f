"""The `routes:` section: path patterns, methods, access rules, CORS and token sources of each route."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gateway.auth import requirements
from gateway.auth.claim_path import ClaimPathError, parse_claim_path
from gateway.auth.token_sources import COOKIE, HEADER_ONLY, parse_token_source
from gateway.config.loader.sections import Problems, Section, is_http_url
from gateway.config.model import ProviderConfig
from gateway.config.yaml_source import LocatedList, LocatedMap
from gateway.pipeline.cors import CorsPolicy
from gateway.pipeline.csrf import SAFE_METHODS, CsrfPolicy, origin_of
from gateway.pipeline.route_overlap import overlaps
from gateway.pipeline.route_table import PatternError, Route, RouteTable, compile_pattern


HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
ACCESS_WORDS = {
    "public": requirements.PUBLIC,
    "authenticated": requirements.AUTHENTICATED,
    "optional": requirements.OPTIONAL_TOKEN,
}



CORS_KEYS = ("allow_origins", "allow_methods", "allow_headers", "expose_headers", "allow_credentials", "max_age")


def _cors(data: Any, line: int, problems: Problems, default: CorsPolicy | None) -> CorsPolicy | None:
    if data is True:
        if default is None:
            problems.add(line, "cors: true needs a top-level 'cors:' policy to use; or give the policy here")
        return default
    if data is False or data is None:
        return None
    if not isinstance(data, LocatedMap):
        problems.add(line, "cors must be true, false, or a mapping of " + ", ".join(CORS_KEYS))
        return None
    section = Section(data, "cors", problems, CORS_KEYS)
    origins = section.strings("allow_origins")
    if not origins:
        problems.add(data.line, "cors needs allow_origins (exact origins like https://app.example.com, or '*')")
    credentials = section.get("allow_credentials", bool, False)
    if credentials and "*" in origins:
        problems.add(section.line("allow_credentials"),
                     "allow_credentials cannot be combined with allow_origins '*'; browsers refuse it")
    for origin in origins:
        if origin != "*" and (not is_http_url(origin) or urlsplit(origin).path):
            problems.add(section.line("allow_origins"), f"origin {origin!r} must look like https://app.example.com")
    methods = tuple(m.upper() for m in section.strings("allow_methods", ("GET", "POST", "PUT", "PATCH", "DELETE")))
    return CorsPolicy(
        allow_origins=frozenset(origins),
        allow_methods=methods,
        allow_headers=section.strings("allow_headers", ("Authorization", "Content-Type")),
        expose_headers=section.strings("expose_headers"),
        allow_credentials=credentials,
        max_age=int(section.duration("max_age", 600)),
    )


def _claim_condition(path_text: Any, spec: Any, line: int, problems: Problems):
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


def _access(data: Any, line: int, problems: Problems, provider_names: set[str], route_line: int,
            nested: bool = False):
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
    section = Section(data, "access", problems, ACCESS_KEYS,
                      {key: f"to the route (line {route_line})" for key in ROUTE_KEYS if key not in ACCESS_KEYS})
    parts: list[requirements.AccessRule] = []
    for key in ("any_of", "all_of"):
        items = section.get(key, list)
        if items is None:
            continue
        if not items:
            problems.add(section.line(key), f"{key} needs at least one rule")
            continue
        rules = tuple(_access(item, items.item_lines[i], problems, provider_names, route_line, nested=True)
                      for i, item in enumerate(items))
        if None not in rules:
            parts.append(requirements.AnyOf(rules) if key == "any_of" else requirements.AllOf(rules))
    conditions = []
    for key in ("scopes", "any_scopes", "claims"):
        if section.has(key) and isinstance(data[key], (list, dict)) and not data[key]:
            problems.add(section.line(key), f"{key} is empty, which would allow any valid token; "
                                            "list what is required, or write access: authenticated")
    scopes = {key: section.strings(key) for key in ("scopes", "any_scopes")}  # read once: one message a mistake
    for key, listed in scopes.items():
        for scope in listed:
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
        scopes=frozenset(scopes["scopes"]),
        any_scopes=frozenset(scopes["any_scopes"]),
        claims=tuple(conditions),
        providers=frozenset(providers) if providers is not None else None,
    )
    if requirement != requirements.Requirement() or not parts:
        parts.insert(0, requirement)
    return parts[0] if len(parts) == 1 else requirements.AllOf(tuple(parts))


ROUTE_KEYS = ("path", "methods", "access", "providers", "cors", "token_from", "csrf_origins",
              "streams_outlive_token")


def _route(data: Any, line: int, problems: Problems, provider_names: set[str],
           default_cors: CorsPolicy | None) -> Route | None:
    if not isinstance(data, LocatedMap):
        problems.add(line, "each route must be a mapping with path and access")
        return None
    before = len(problems.items)
    access_line = f" (line {data.key_lines['access']})" if "access" in data else ""
    section = Section(data, "route", problems, ROUTE_KEYS,
                      {key: f"under 'access:'{access_line}" for key in ACCESS_KEYS if key not in ROUTE_KEYS})
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
        if data["methods"] == []:
            problems.add(section.line("methods"), "methods must list at least one method, or be left out for all")
        methods = {m.upper() for m in names}
        if "GET" in methods:
            methods.add("HEAD")  # as Flask does: HEAD is GET without the body
        methods = frozenset(methods)
    if section.misplaced and data.get("access") is None:
        access = None  # its rule is there, only dedented: that problem is already reported
    elif not section.has("access"):
        problems.add(data.line, "route needs 'access' (public, authenticated, optional, or a rule mapping); "
                                "there is no default, so a typo cannot make a route public")
        access = None
    else:
        access = _access(data["access"], section.line("access"), problems, provider_names, data.line)
    providers = section.strings("providers") if section.has("providers") else None
    for name in providers or ():
        if name not in provider_names:
            problems.add(section.line("providers"), f"route names provider {name!r}, which is not configured")
    cors = _cors(data.get("cors"), section.line("cors"), problems, default_cors)
    token_from = _token_from(section, problems, access)
    csrf = _csrf(section, problems, methods, token_from)
    outlive = section.get("streams_outlive_token", bool, False)
    if regex is None or access is None or len(problems.items) > before:
        return None  # a route with a problem is left out of the table, so no lint follows from the same mistake
    accepted = requirements.intersect_providers(  # `providers:` on the route and in its rule mean the same
        [frozenset(providers) if providers is not None else None, access.accepted_providers()])
    return Route(pattern, regex, methods, access, accepted, data.line, cors, token_from, csrf, outlive)


def _token_from(section: Section, problems: Problems, access) -> tuple:
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


def _csrf(section: Section, problems: Problems, methods: frozenset[str] | None, token_from: tuple) -> CsrfPolicy | None:
    """`csrf_origins:` the origins allowed to send unsafe requests where a cookie carries the token (pipeline/csrf.py).

    Required there; optional on routes allowing only safe methods, where it names the origins that may open a
    WebSocket besides the gateway's own host; refused without a cookie source.  A separate key from CORS `allow_origins`, which says who may *read*
    answers (and may be '*'), not who may make a browser *send* its cookie."""
    cookies = tuple(source for source in token_from if source.kind == COOKIE)
    unsafe = sorted(HTTP_METHODS - SAFE_METHODS if methods is None else methods - SAFE_METHODS)
    texts = section.strings("csrf_origins")
    if not cookies:
        if section.has("csrf_origins"):
            problems.add(section.line("csrf_origins"), "csrf_origins has no effect without a cookie in token_from; "
                                                       "remove it")
        return None
    if not unsafe and not texts:  # WebSocket handshakes are still checked, against the gateway's own host
        return None
    origins = set()
    for text in texts:
        origin = origin_of(text)
        if origin is None or urlsplit(text).path not in ("", "/") or "*" in text:
            problems.add(section.line("csrf_origins"), f"csrf origin {text!r} must be an exact origin like "
                                                       "https://app.example.com")
            continue
        origins.add(origin)
    if not texts:
        allowed = "every method" if methods is None else ", ".join(unsafe)
        problems.add(section.line("token_from"),
                     f"this route reads its token from a cookie and allows {allowed}: browsers send cookies with "
                     "requests other sites make them send (cross-site request forgery); list the origins allowed "
                     "to send unsafe requests under 'csrf_origins: [https://app.example.com]', or allow only GET/HEAD")
        return None
    return CsrfPolicy(frozenset(origins), cookies)


def read_routes(top: Section, problems: Problems, providers: list[ProviderConfig]) -> RouteTable:
    """The route table in file order (first match wins), with unreachable routes reported."""
    names = {p.name for p in providers}
    default_cors = _cors(top.data.get("cors"), top.line("cors"), problems, None) if top.has("cors") else None
    routes: list[Route] = []
    route_items = top.get("routes", list, required=True) or LocatedList()
    if isinstance(route_items, LocatedList) and not route_items:
        problems.add(top.line("routes"), "routes is empty: every request would get 404")
    for index, item in enumerate(route_items):
        route = _route(item, route_items.item_lines[index], problems, names, default_cors)
        if route is not None:
            routes.append(route)
    for overlap in overlaps(routes):
        if overlap.taken is None:  # lint warns about the partial ones
            problems.add(overlap.route.line, overlap.describe())
    if not providers:
        for route in routes:
            if route.access.token is not requirements.TokenNeed.NONE:
                problems.add(route.line, f"route {route.pattern!r} needs tokens but no provider is configured; "
                                         "add one under 'providers:'")
                break
    return RouteTable(tuple(routes))
