"""Route matcher: the first route whose pattern and methods fit the canonical path wins.

Patterns match whole segments and are case-sensitive like Flask's: `*` is
exactly one segment and never crosses `/`; `**` (last segment only) is zero
or more trailing segments, so `/admin/**` covers `/admin` and `/admin/x/y`
but never `/admin-old`.  The table only ever sees paths that came out of
`canonical_path`, so what decides the rule is what goes upstream.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from gateway.pipeline.canonical_path import PathRejected, canonical_segment
from gateway.pipeline.cors import CorsPolicy
from gateway.pipeline.csrf import CsrfPolicy
from gateway.auth.requirements import AccessRule
from gateway.auth.token_sources import HEADER_ONLY, TokenSource


class PatternError(ValueError):
    pass


def compile_pattern(pattern: str) -> re.Pattern:
    """Turn `/a/*/b/**` into an anchored regex over canonical paths."""
    if not pattern.startswith("/"):
        raise PatternError("a path pattern must start with '/'")
    if pattern == "/":
        return re.compile(r"/\Z")
    segments = pattern[1:].split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            if not last:
                raise PatternError("'**' may only be the last segment of a pattern")
            parts.append(r"(?:/.*)?")
        elif segment == "*":
            parts.append(r"/[^/]+")
        elif "*" in segment:
            raise PatternError(
                f"segment {segment!r} mixes '*' with text; wildcards must be a whole segment"
            )
        elif segment == "" and not last:
            raise PatternError("empty segment ('//') in pattern")
        else:
            try:  # spelt as canonical paths are: `/café` matches `/caf%C3%A9`, `/a%3Ab` is `/a:b`
                text = canonical_segment(segment)
            except PathRejected as exc:
                raise PatternError(f"segment {segment!r}: {exc}") from None
            if text in (".", ".."):
                raise PatternError("'.' and '..' segments can never match a canonical path")
            parts.append("/" + re.escape(text))
    return re.compile("".join(parts) + r"\Z")


@dataclass(frozen=True)
class Route:
    pattern: str
    regex: re.Pattern
    methods: frozenset[str] | None  # None: every method
    access: AccessRule
    providers: frozenset[str] | None  # None: every configured provider
    line: int
    cors: CorsPolicy | None = None
    token_from: tuple[TokenSource, ...] = HEADER_ONLY  # where this route reads the token
    csrf: CsrfPolicy | None = None  # set where a cookie token meets unsafe methods
    streams_outlive_token: bool = False  # True: streamed answers and WebSockets are not ended at token expiry

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods


@dataclass(frozen=True)
class NoRoute:
    pass


@dataclass(frozen=True)
class MethodNotAllowed:
    allow: tuple[str, ...]


Match = Union[Route, NoRoute, MethodNotAllowed]
NO_ROUTE = NoRoute()


class RouteTable:
    """Ordered routes; `match` is the only question the request path asks."""

    def __init__(self, routes: tuple[Route, ...]):
        self.routes = routes

    def match(self, method: str, path: str) -> Match:
        allow: set[str] = set()
        path_matched = False
        for route in self.routes:
            if route.regex.match(path) is None:
                continue
            if route.allows(method):
                return route
            path_matched = True
            allow |= route.methods  # type: ignore[arg-type]  # None always allows
        if path_matched:
            return MethodNotAllowed(tuple(sorted(allow)))
        return NO_ROUTE
