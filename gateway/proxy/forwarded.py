"""X-Forwarded-* and Forwarded: tell the upstream who the client was, believing earlier hops only by configuration.

Anyone can send `X-Forwarded-For: 10.0.0.1`.  An upstream that rate-limits,
audits or allow-lists on it must only ever see a chain whose entries were
written by proxies the operator named, so a peer's chain is kept (and our
hop appended) only when the peer's address is inside `trusted_proxies`;
from anyone else the four headers are dropped and rebuilt from what the
gateway saw on the socket.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from typing import Iterable

from multidict import CIMultiDictProxy

FORWARDING_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


def parse_network(text: str) -> Network:
    """`10.0.0.0/8`, `::1` or `192.0.2.7` (a single address); ValueError names the problem."""
    return ipaddress.ip_network(text.strip(), strict=True)


def is_trusted(peer: str | None, networks: Iterable[Network]) -> bool:
    """Whether the socket peer is one of the configured proxies (IPv4-mapped IPv6 counts as IPv4)."""
    if not peer or not networks:  # the usual case: nobody is trusted, so skip parsing the address
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def forwarding_headers(incoming: CIMultiDictProxy, peer: str | None, scheme: str,
                       trusted: bool) -> tuple[tuple[str, str], ...]:
    """The four headers to send upstream, in order; the caller has already dropped the client's."""
    host = incoming.get("Host")
    if not trusted:  # the usual case: the same few (peer, scheme, Host) over and over
        return _own_hop(peer, scheme, host)
    node = peer or "unknown"
    chain = ", ".join(incoming.getall("X-Forwarded-For", ()))
    earlier = ", ".join(incoming.getall("Forwarded", ()))
    proto = incoming.get("X-Forwarded-Proto") or scheme
    original_host = incoming.get("X-Forwarded-Host") or host
    element = _element(node, scheme, host)
    out = [("X-Forwarded-For", f"{chain}, {node}" if chain else node), ("X-Forwarded-Proto", proto)]
    if original_host:
        out.append(("X-Forwarded-Host", original_host))
    out.append(("Forwarded", f"{earlier}, {element}" if earlier else element))
    return tuple(out)


@functools.lru_cache(maxsize=1024)  # bounded: the Host part is the client's to choose
def _own_hop(peer: str | None, scheme: str, host: str | None) -> tuple[tuple[str, str], ...]:
    """The headers when nothing before the gateway is believed: only what it saw on the socket."""
    node = peer or "unknown"
    out = [("X-Forwarded-For", node), ("X-Forwarded-Proto", scheme)]
    if host:
        out.append(("X-Forwarded-Host", host))
    out.append(("Forwarded", _element(node, scheme, host)))
    return tuple(out)


def _element(node: str, scheme: str, host: str | None) -> str:
    """This hop's RFC 7239 element: for, proto and host."""
    return ";".join(f"{key}={_value(value)}" for key, value in
                    (("for", _node(node)), ("proto", scheme), ("host", host)) if value)


def _node(address: str) -> str:
    """RFC 7239 §6: IPv6 nodes are bracketed."""
    return f"[{address}]" if ":" in address else address


def _value(text: str) -> str:
    """A token as is, anything else as a quoted-string (RFC 7239 §4)."""
    if _TOKEN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def client_origin(incoming: CIMultiDictProxy, scheme: str, trusted: bool) -> str:
    """`scheme://host[:port]` as the client addressed it (where no `public_url` says so): what a trusted
    proxy says in X-Forwarded-Proto/-Host (its first, client-side entry), else the listener's scheme and Host."""
    host = incoming.get("Host", "")
    if trusted:
        scheme = _first(incoming.get("X-Forwarded-Proto")) or scheme
        host = _first(incoming.get("X-Forwarded-Host")) or host
    return f"{scheme}://{host}"


def _first(value: str | None) -> str:
    return value.partition(",")[0].strip() if value else ""
