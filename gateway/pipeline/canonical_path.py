"""The one path canonicalizer: its output picks the route and is sent upstream byte for byte.

Werkzeug decodes percent-escapes once and merges `//`; yarl resolves `..`.
A gateway that matches one spelling and forwards another is bypassed, so
this module decodes what decoding cannot change the meaning of (escaped
unreserved characters and sub-delimiters: `%61`, `%3A`), refuses everything
that two parsers could read differently, and returns the single spelling
that both the route table and the upstream will see.  Two targets Werkzeug
reads as the same path get the same canonical spelling; route patterns are
spelt the same way (`canonical_segment`), so `/café` in routes.yaml is the
`/caf%C3%A9` a client must send.
"""
from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# Already canonical: no escapes, no ';', no empty, '.' or '..' segments.
_FAST = re.compile(r"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*/?\Z")
_SUB_DELIMS_AND_PCHAR = frozenset("!$&'()*+,=:@")


class PathRejected(ValueError):
    """The path is ambiguous or malformed; the message says what and how to fix it."""


def split_target(target: str, allow_params: bool = False) -> tuple[str, str]:
    """An origin-form request target -> (canonical path, query forwarded byte for byte).

    A `#` anywhere is refused: clients never send fragments, and the upstream
    URL builder would silently cut the query at it.  Absolute-form
    (`http://host/...`) and authority-form targets are refused outright:
    this is a reverse proxy, and aiohttp would otherwise route on the
    client-chosen host.
    """
    if "#" in target:
        raise PathRejected("'#' is not allowed in a request target")
    if not target.startswith("/"):
        raise PathRejected("the request target must be a path starting with '/' "
                           "(absolute-form 'http://host/...' and authority-form targets are refused)")
    path, _, query = target.partition("?")
    return canonicalize(path, allow_params), query


def canonical_segment(text: str, allow_params: bool = False) -> str:
    """One path segment in canonical spelling; route patterns are compiled from it."""
    return _segment(text, allow_params)


def canonicalize(raw: str, allow_params: bool = False) -> str:
    if _FAST.match(raw) and raw.startswith("/"):
        return raw
    if not raw.startswith("/"):
        raise PathRejected("the request target must be a path starting with '/'")
    if "#" in raw:
        raise PathRejected("'#' is not allowed in a request target")
    segments = raw.split("/")[1:]
    out: list[str] = []
    for index, segment in enumerate(segments):
        text = _segment(segment, allow_params)
        if text in (".", ".."):
            raise PathRejected("'.' and '..' path segments are refused: send the resolved path")
        if text == "" and index != len(segments) - 1:
            continue  # '//' is merged, as Werkzeug does, and the merged form is what we forward
        out.append(text)
    path = "/" + "/".join(out)
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise PathRejected("the path is not valid UTF-8 once percent-decoded") from None
    return path


def _segment(segment: str, allow_params: bool) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "%":
            pair = segment[i + 1:i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise PathRejected("a '%' in the path must start an escape like %2F")
            byte = int(pair, 16)
            decoded = chr(byte)
            if decoded in UNRESERVED or decoded in _SUB_DELIMS_AND_PCHAR:
                out.append(decoded)  # Werkzeug reads %3A as ':', so ':' is the one spelling
            elif byte in (0x2F, 0x5C):
                raise PathRejected("encoded '/' or '\\' (%2F, %5C) in the path is refused as ambiguous")
            elif byte < 0x20 or byte == 0x7F:
                raise PathRejected("encoded control characters (like %00) are refused in the path")
            elif decoded == ";":
                if not allow_params:
                    raise PathRejected("';' path parameters are refused (set allow_path_params: true to pass them)")
                out.append(";")
            else:
                out.append("%" + pair.upper())
            i += 3
            continue
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            raise PathRejected("control characters are refused in the path")
        if char == "\\":
            raise PathRejected("'\\' in the path is refused as ambiguous")
        if char == ";" and not allow_params:
            raise PathRejected("';' path parameters are refused (set allow_path_params: true to pass them)")
        if char in UNRESERVED or char in _SUB_DELIMS_AND_PCHAR or char == ";":
            out.append(char)
        elif code < 0x80:
            out.append("%%%02X" % code)
        else:
            try:
                encoded = char.encode("utf-8")
            except UnicodeEncodeError:
                raise PathRejected("the path is not valid UTF-8") from None
            out.append("".join("%%%02X" % b for b in encoded))
        i += 1
    return "".join(out)
