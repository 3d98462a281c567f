"""Cross-site request forgery guard for routes that take their token from a cookie.

A browser attaches cookies to any request to the gateway's site, also one a
foreign page makes it send (a form POST, a fetch with credentials), while it
never attaches an Authorization header on its own.  So a route that reads its
token from a cookie and accepts unsafe methods lists the origins allowed to
send them (`csrf_origins`), and an unsafe request carrying the token cookie
must show one of them in `Origin` (else `Referer`, which some older browsers
send instead): otherwise 403 csrf_origin_mismatch, before the token is looked
at.  Safe methods (GET, HEAD, OPTIONS, TRACE) must not change state, so they
are not checked, as in OWASP's origin-verification defence.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from multidict import CIMultiDictProxy

from gateway import errors
from gateway.auth.token_sources import TokenSource, cookie_token_present

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` as browsers serialise an origin (lower case, default port left out); None if none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if port in (None, _DEFAULT_PORTS[scheme]) else f":{port}")


@dataclass(frozen=True)
class CsrfPolicy:
    origins: frozenset[str]  # normalised by origin_of
    cookie_sources: tuple[TokenSource, ...]  # the route's cookie token sources: the check applies when one is sent

    def check(self, method: str, headers: CIMultiDictProxy) -> None:
        """Raise 403 csrf_origin_mismatch for an unsafe request carrying a token cookie from elsewhere."""
        if method in SAFE_METHODS or not cookie_token_present(headers, self.cookie_sources):
            return
        origin_header = headers.get("Origin")
        source, sent = ("Origin", origin_header) if origin_header is not None else ("Referer", headers.get("Referer"))
        if sent is not None and origin_of(sent) in self.origins:
            return
        raise errors.csrf_origin_mismatch(source if sent is not None else None)


def check_websocket_origin(headers: CIMultiDictProxy, cookie_sources: tuple[TokenSource, ...],
                           policy: CsrfPolicy | None) -> None:
    """Cross-site WebSocket hijacking: a WebSocket handshake is a GET, yet the page that opens it then reads and
    writes the socket with the browser's cookie attached.  Browsers always send Origin on it (RFC 6455 §4.1), so
    with a token cookie it must be the gateway's own host or one of the route's csrf_origins; a client that
    sends no Origin is no browser, and no page can lend it a cookie."""
    origin = headers.get("Origin")
    if origin is None or not cookie_token_present(headers, cookie_sources):
        return
    sent = origin_of(origin)
    if sent is not None and ((policy is not None and sent in policy.origins)
                             or urlsplit(sent).netloc == headers.get("Host", "").lower()):
        return
    raise errors.csrf_origin_mismatch("Origin")
