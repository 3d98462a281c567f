"""Claim paths: how a rule names a value inside a verified token payload.

Segments are separated by `.`; a segment written in square brackets is taken
literally, so claims whose names contain dots or slashes can be reached:
`realm_access.roles`, `resource_access.[my.api].roles`,
`[https://example.com/roles]`.  Brackets cannot nest.
"""
from __future__ import annotations

import re
from typing import Any

MISSING = object()
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class ClaimPathError(ValueError):
    pass


def parse_claim_path(text: str) -> tuple[str, ...]:
    if not isinstance(text, str) or not text:
        raise ClaimPathError("a claim path must be a non-empty string")
    segments: list[str] = []
    bare: list[str] = []  # segments written without brackets
    position = 0
    while position < len(text):
        if text[position] == "[":
            end = text.find("]", position)
            if end < 0:
                raise ClaimPathError(f"unclosed '[' in claim path {text!r}")
            segment = text[position + 1:end]
            if "[" in segment:
                raise ClaimPathError(f"brackets cannot nest in claim path {text!r}")
            position = end + 1
            if position < len(text) and text[position] != ".":
                raise ClaimPathError(f"expected '.' after ']' in claim path {text!r}")
        else:
            end = text.find(".", position)
            end = len(text) if end < 0 else end
            segment = text[position:end]
            if "]" in segment:
                raise ClaimPathError(f"stray ']' in claim path {text!r}")
            bare.append(segment)
            position = end
        if not segment:
            raise ClaimPathError(f"empty segment in claim path {text!r}")
        segments.append(segment)
        if position < len(text):
            position += 1  # the '.'
            if position == len(text):
                raise ClaimPathError(f"claim path {text!r} ends with '.'")
    if any("/" in segment for segment in bare) or _URL_START.match(text):
        raise ClaimPathError(f"claim path {text!r} would be read as the nested names "
                             f"{' > '.join(repr(s) for s in segments)}, a URL split at its dots; a claim named "
                             f"by a URL is written in square brackets: '[{text}]'")
    return tuple(segments)


def lookup(payload: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`, or MISSING; never raises on odd payload shapes."""
    value = payload
    for segment in path:
        if not isinstance(value, dict):
            return MISSING
        value = value.get(segment, MISSING)
        if value is MISSING:
            return MISSING
    return value


def format_claim_path(path: tuple[str, ...]) -> str:
    return ".".join(s if s.replace("_", "").replace("-", "").isalnum() else f"[{s}]" for s in path)
