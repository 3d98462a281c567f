"""Header hygiene between client, gateway and upstream.

Order is the defence: hop-by-hop headers (and every header the client names
in `Connection`) go first, then every client-supplied identity header in any
spelling, and only then does the gateway add its own, so nothing a client
sends can forge or remove what the upstream trusts.
"""
from __future__ import annotations

import functools

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.proxy.forwarded import forwarding_headers
from gateway.auth.identity import Identity

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
})
IDENTITY_PREFIX = "x-auth-"
# Not hop-by-hop by RFC, but answered by the gateway itself (100 Continue once the request is
# authorized) rather than passed on, so the upstream never waits for a continue nobody sends.
ANSWERED_HERE = frozenset({"expect"})
# Each WebSocket hop negotiates its own handshake; the upstream dial generates fresh ones.
WEBSOCKET_HANDSHAKE = frozenset({
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept",
})
# The token and its DPoP proof (RFC 9449) stay at the gateway unless forward_authorization: the
# upstream gets the verified claims, and X-Auth-Binding says the proof was checked.
CREDENTIAL_HEADERS = frozenset({"authorization", "dpop"})
HOST_PASS = "pass"  # the client's Host goes upstream unchanged
HOST_UPSTREAM = "upstream"  # the upstream URL's authority; any other value is sent literally
# Headers through which a framework learns the "original" URL, host or client (Werkzeug's
# ProxyFix, X-Original-URL rewriting, ...): only the gateway may say that, so a client's are
# dropped in any spelling, and the gateway sets X-Forwarded-For/-Proto/-Host itself.
PROXY_PREFIXES = ("x-forwarded-", "x-original-", "x-rewrite-")
PROXY_HEADERS = frozenset({"forwarded", "x-real-ip", "x-client-ip", "x-envoy-original-path"})


def _connection_listed(headers: CIMultiDictProxy) -> frozenset[str]:
    values = headers.getall("Connection", ())
    if len(values) == 1:
        return _listed(values[0])
    return frozenset().union(*map(_listed, values))


@functools.lru_cache(maxsize=256)  # bounded: the values are the sender's; nearly always "keep-alive"
def _listed(value: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in value.split(","))


def _spelt_as(name: str, prefixes: tuple[str, ...], names: frozenset[str]) -> bool:
    """Any case, and '_' for '-' (WSGI servers map both to the same HTTP_* key)."""
    normal = name.lower().replace("_", "-")
    return normal.startswith(prefixes) or normal in names


def is_identity_header(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """X-Auth-* and configured claim headers."""
    return _spelt_as(name, (IDENTITY_PREFIX,), extra)


def is_proxy_header(name: str) -> bool:
    """X-Forwarded-*, Forwarded, X-Original-URL and kin."""
    return _spelt_as(name, PROXY_PREFIXES, PROXY_HEADERS)


@functools.lru_cache(maxsize=4096)  # bounded: clients choose the names; the hot path sees the same few
def _never_forwarded(lower: str, strip: frozenset[str]) -> bool:
    """Hop-by-hop, answered here, identity (X-Auth-*, claim headers) or proxy headers (rebuilt below)."""
    return lower in HOP_BY_HOP or lower in ANSWERED_HERE or is_identity_header(lower, strip) \
        or is_proxy_header(lower)


def upstream_request_headers(incoming: CIMultiDictProxy, identity: Identity | None,
                             forward_authorization: bool, peer: str | None,
                             scheme: str, strip: frozenset[str] = frozenset(), *,
                             trusted_peer: bool = False, host: str = HOST_PASS,
                             websocket: bool = False) -> CIMultiDict:
    """What the upstream receives: the client's end-to-end headers, then the gateway's own.

    `trusted_peer`: the peer is a configured proxy, so its forwarding chain is extended
    rather than replaced.  `host`: HOST_PASS, HOST_UPSTREAM or a literal Host value.
    """
    listed = _connection_listed(incoming) if "Connection" in incoming else frozenset()
    out = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if _never_forwarded(lower, strip) or lower in listed:
            continue
        if websocket and lower in WEBSOCKET_HANDSHAKE:
            continue
        if lower == "host" and host != HOST_PASS:
            continue
        if lower in CREDENTIAL_HEADERS and not forward_authorization:
            continue
        out.add(name, value)
    if host not in (HOST_PASS, HOST_UPSTREAM):
        out["Host"] = host
    if identity is not None:
        out.extend(identity.upstream_headers)
    out.extend(forwarding_headers(incoming, peer, scheme, trusted_peer))
    return out


def downstream_response_headers(upstream: CIMultiDictProxy) -> CIMultiDict:
    listed = _connection_listed(upstream) if "Connection" in upstream else frozenset()
    out = CIMultiDict()
    for name, value in upstream.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in listed:
            continue
        out.add(name, value)
    return out
