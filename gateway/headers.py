"""Header hygiene between client, gateway and upstream.

Order is the defence: hop-by-hop headers (and every header the client names
in `Connection`) go first, then every client-supplied identity header in any
spelling, and only then does the gateway add its own, so nothing a client
sends can forge or remove what the upstream trusts.
"""
from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from .identity import Identity

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
})
IDENTITY_PREFIX = "x-auth-"


def _connection_listed(headers: CIMultiDictProxy) -> frozenset[str]:
    listed = set()
    for value in headers.getall("Connection", ()):
        listed.update(part.strip().lower() for part in value.split(","))
    return frozenset(listed)


def is_identity_header(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """X-Auth-* and configured claim headers, in any case and with '_' for '-'."""
    normal = name.lower().replace("_", "-")
    return normal.startswith(IDENTITY_PREFIX) or normal in extra


def upstream_request_headers(incoming: CIMultiDictProxy, identity: Identity | None,
                             forward_authorization: bool, peer: str | None,
                             scheme: str, strip: frozenset[str] = frozenset()) -> CIMultiDict:
    listed = _connection_listed(incoming) if "Connection" in incoming else frozenset()
    out = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in listed:
            continue
        if is_identity_header(lower, strip):
            continue
        if lower == "authorization" and not forward_authorization:
            continue
        if lower in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"):
            continue  # set below from what we saw ourselves; no peer is trusted to have set them
        out.add(name, value)
    if identity is not None:
        out.extend(identity.upstream_headers)
    if peer:
        out["X-Forwarded-For"] = peer
    out["X-Forwarded-Proto"] = scheme
    host = incoming.get("Host")
    if host:
        out["X-Forwarded-Host"] = host
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
