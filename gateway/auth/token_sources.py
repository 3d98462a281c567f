"""Where a route lets the token come from: the Authorization header, or a query parameter or cookie where allowed.

Browsers cannot set headers on a WebSocket or an EventSource, so a route may
opt in with `token_from: [header, query:access_token, cookie:session]`.  The
default is the header alone.  A token offered in more than one place (two
sources, or one name twice) is refused as ambiguous (RFC 6750 §2.0: one
method per request) instead of picking one, so nothing in front of the
gateway can disagree with it about which token authorized a request.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from aiohttp import web
from multidict import CIMultiDict

# The library's own RFC 6265 Cookie parser (what request.cookies uses), called directly because
# request.cookies keeps only one of two same-name cookies, and two must be refused, not chosen.
from aiohttp._cookie_helpers import parse_cookie_header

from gateway import errors
from gateway.auth.extractor import check_token, extract_authorization
from gateway.errors import BEARER

HEADER, QUERY, COOKIE = "header", "query", "cookie"
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


@dataclass(frozen=True)
class TokenSource:
    kind: str  # HEADER, QUERY or COOKIE
    name: str = ""  # the parameter or cookie name

    def describe(self) -> str:
        if self.kind == HEADER:
            return "the Authorization header"
        return f"{'query parameter' if self.kind == QUERY else 'cookie'} {self.name!r}"


HEADER_ONLY = (TokenSource(HEADER),)


def parse_token_source(text: str) -> TokenSource:
    """`header`, `query:NAME` or `cookie:NAME`; ValueError says what is wrong."""
    kind, sep, name = text.partition(":")
    if kind == HEADER and not sep:
        return TokenSource(HEADER)
    if kind in (QUERY, COOKIE) and _NAME.match(name):
        return TokenSource(kind, name)
    raise ValueError(f"token_from entry {text!r} must be 'header', 'query:NAME' or 'cookie:NAME'")


def describe_sources(sources: tuple[TokenSource, ...]) -> str:
    return " or ".join(source.describe() for source in sources)


def find_token(request: web.BaseRequest, sources: tuple[TokenSource, ...],
               max_token_bytes: int) -> tuple[str, str] | None:
    """(scheme, token): the one token the request carries in an allowed place, None when there is none.

    Only the Authorization header can say DPoP; a query or cookie token is a bearer token."""
    found: list[tuple[TokenSource, str]] = []
    scheme = BEARER
    for source in sources:
        if source.kind == HEADER:
            presented = extract_authorization(request.headers, max_token_bytes)
            values = []
            if presented is not None:
                scheme, token = presented
                values.append(token)
        elif source.kind == QUERY:
            values = request.query.getall(source.name, [])
        else:
            values = [morsel.value for header in request.headers.getall("Cookie", ())
                      for name, morsel in parse_cookie_header(header) if name == source.name]
        found.extend((source, value) for value in values)
    if not found:
        return None
    if len(found) > 1:
        places = sorted({source.describe() for source, _ in found})
        raise errors.ambiguous_token(" and ".join(places) if len(places) > 1 else f"{places[0]}, more than once")
    source, token = found[0]
    return (scheme, token) if source.kind == HEADER else (BEARER, check_token(token, max_token_bytes))


def cookie_token_present(headers, sources: tuple[TokenSource, ...]) -> bool:
    """Does the request carry a cookie a token may come from (read as `find_token` reads it)?"""
    names = {source.name for source in sources if source.kind == COOKIE}
    return bool(names) and any(name in names for header in headers.getall("Cookie", ())
                               for name, _ in parse_cookie_header(header))


def query_without_tokens(query: str, sources: tuple[TokenSource, ...]) -> str:
    """The raw query minus every parameter a token may come from; all other bytes as the client sent them.

    Names are decoded as the extractor reads them (yarl's parse_qsl rules), so the pair it took the
    token from is the pair removed here.
    """
    names = {source.name for source in sources if source.kind == QUERY}
    if not names or not query:
        return query
    return "&".join(pair for pair in query.split("&") if unquote_plus(pair.partition("=")[0]) not in names)


def cookie_without_tokens(header: str, sources: tuple[TokenSource, ...]) -> str:
    """A Cookie header value minus the cookies a token may come from ('' when none is left).

    Read with the parser `find_token` uses, which also splits on ',' and whitespace: a header
    holding a token cookie is rebuilt from that parser's other cookies, so what it took a token
    from never goes on; any other header goes on as sent.
    """
    names = {source.name for source in sources if source.kind == COOKIE}
    cookies = parse_cookie_header(header)
    if not any(name in names for name, _ in cookies):
        return header
    return "; ".join(f"{name}={morsel.coded_value}" for name, morsel in cookies if name not in names)


def drop_tokens(sources: tuple[TokenSource, ...], query: str, headers: CIMultiDict) -> str:
    """Query and cookie tokens stay at the gateway, as the Authorization header does: the upstream gets the
    claims.  Removes the token cookies from `headers` in place and returns the query without token parameters."""
    cookies = [cookie_without_tokens(value, sources) for value in headers.popall("Cookie", ())]
    for value in cookies:
        if value:
            headers.add("Cookie", value)
    return query_without_tokens(query, sources)
