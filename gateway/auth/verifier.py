"""Verifier: turns a compact JWS into an Identity, or a 401 that names the problem (Envoy calls this the authenticator).

Order matters: the provider is chosen by `iss` before any network or crypto
work (an unknown issuer costs nothing), the algorithm must be one the
provider allows and the key must be the published key the `kid` names, and
only then are the claims, read from the verified bytes, checked.  `jku`,
`x5u`, `jwk` and `x5c` headers are never read.
"""
from __future__ import annotations

import binascii
import json
import math
import re
import time
from typing import Any, Iterable, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jose.backends.cryptography_backend import CryptographyECKey, CryptographyRSAKey

from gateway import errors
from gateway.auth.binding import BINDING_HEADER, CLIENT_CERT_HEADER, DPOP_BINDING, JKT, confirmation_headers
from gateway.auth.claim_path import MISSING, format_claim_path, lookup
from gateway.config.model import ProviderConfig
from gateway.auth.identity import Identity
from gateway.auth.jwks_cache import JwksCache

SUBJECT_HEADER = "X-Auth-Subject"
ISSUER_HEADER = "X-Auth-Issuer"
SCOPES_HEADER = "X-Auth-Scopes"
CLAIMS_HEADER = "X-Auth-Claims"
IDENTITY_HEADERS = (SUBJECT_HEADER, ISSUER_HEADER, SCOPES_HEADER, CLAIMS_HEADER, BINDING_HEADER, CLIENT_CERT_HEADER)
_TYP_ALIASES = {"at+jwt": {"at+jwt", "application/at+jwt"}}
MAX_JSON_DEPTH = 32  # claim sets are shallow; deeper JSON is refused before anyone walks it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL
_FROM_BASE64URL = bytes.maketrans(b"-_", b"+/")
_TO_BASE64URL = bytes.maketrans(b"+/", b"-_")
_PADDING = (b"", b"===", b"==", b"=")  # what python-jose's base64url_decode appends, by length % 4


def _strict_object(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):  # a key came twice: name it (the rare path)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


# Built once: json.loads(..., object_pairs_hook=...) builds a new decoder (and scanner) on every call.
_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_strict_object, parse_constant=_not_json)
_SCAN_VALUE = _STRICT_JSON.scan_once  # the decoder's C scanner: one JSON value starting exactly at an index


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json_object(raw: bytes, what: str, code: str = "invalid_token") -> dict:
    """Strict JSON (RFC 8259, UTF-8): duplicate keys, NaN/Infinity and deep nesting are refused,
    so no two readers (python-jose, this gateway, the upstream) can disagree about a token."""
    try:
        text = raw.decode("utf-8")
        try:  # a token's JSON: one value from the first character to the last, with no Python around the scan
            value, end = _SCAN_VALUE(text, 0)
        except StopIteration:  # no value at 0 (whitespace, a BOM, not JSON): the full reader gives the error
            end = -1
        if end != len(text):  # whitespace around it, or more after it: the full reader decides, as json.loads does
            value = _STRICT_JSON.decode(text)  # a BOM is refused ("Expecting value"), as by json.loads
    except RecursionError:
        raise errors.unauthorized(code, f"token {what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.unauthorized(code, f"token {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise errors.unauthorized(code, f"token {what} is not a JSON object")
    # JSON nested n deep has at least n opening brackets: most claim sets need no walk at all
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise errors.unauthorized(code, f"token {what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


_HASHES = {cls: cls() for cls in (hashes.SHA256, hashes.SHA384, hashes.SHA512)}
_ECDSA = {cls: ec.ECDSA(hash_) for cls, hash_ in _HASHES.items()}
_PKCS1V15 = padding.PKCS1v15()


def signature_verifies(key: Any, signing_input: bytes, signature: bytes) -> bool:
    """`key.verify(signing_input, signature)` of a python-jose key, minus the wrapper's per-call work.

    The check itself is the `cryptography` public key python-jose built from the JWK (the
    same object, the same algorithm: the hash is the key's own, fixed when JwksCache built it
    for exactly one alg).  What is skipped: new padding, hash and ECDSA objects on every call
    (measured 5-10% of an ES256 verify).  A JWS ECDSA signature is R || S, each as long as the
    curve's order; anything else is refused before the DER encoding `cryptography` wants.
    Keys of any other type go through python-jose as before.
    """
    kind = type(key)
    if kind is CryptographyECKey:
        prepared = key.prepared_key
        size = (prepared.key_size + 7) // 8
        if len(signature) != 2 * size:
            return False
        der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
        prepared.verify(der, signing_input, _ECDSA[key.hash_alg])  # raises InvalidSignature
        return True
    if kind is CryptographyRSAKey and key.is_public():
        key.prepared_key.verify(signature, signing_input, _PKCS1V15, _HASHES[key.hash_alg])
        return True
    return key.verify(signing_input, signature)


class SplitToken(NamedTuple):
    header: dict  # strictly parsed, not yet trusted
    payload: bytes  # raw, not yet trusted
    signing_input: bytes  # what the signature covers
    signature: bytes


# Parsed headers of tokens whose signature verified, by their exact encoded bytes: an issuer signs
# many tokens under one header, so a new token's header is usually one seen before.  Filled only
# after a signature check, so forged tokens cannot fill it; bounded, and never changed once filled.
# The parse is deterministic: a header found here is what parsing those bytes again would give.
_VERIFIED_HEADERS: dict[bytes, dict] = {}
_VERIFIED_HEADERS_MAX = 256


def base64url_decode(part: bytes) -> bytes:
    """What python-jose's `base64url_decode` does (pad, map -_ to +/, lenient a2b_base64), in one C call."""
    return binascii.a2b_base64(part.translate(_FROM_BASE64URL) + _PADDING[len(part) % 4])


def split_token(token: str) -> SplitToken:
    """A compact JWS decoded once: the header strictly parsed, the rest as bytes, nothing trusted yet.

    Parsed here rather than by python-jose's lenient reader, whose RecursionError on a deeply
    nested header would escape as a 500 and which lets a repeated key silently win; and once,
    because `jws.verify` would decode the whole token again on every cache miss.
    """
    return SplitToken._make(_split(token)[:4])


def _split(token: str) -> tuple[dict, bytes, bytes, bytes, bytes | None]:
    """split_token's parts as a plain tuple, and the encoded header when it was parsed here (None: memoised)."""
    try:
        data = token.encode("ascii")
        encoded_header, encoded_payload, encoded_signature = data.split(b".")
        header = _VERIFIED_HEADERS.get(encoded_header)  # shared: read, never modified
        raw_header = base64url_decode(encoded_header) if header is None else b""
        raw_payload = base64url_decode(encoded_payload)
        signature = base64url_decode(encoded_signature)
    except ValueError:  # wrong part count, non-ASCII (UnicodeEncodeError), bad base64 (binascii.Error)
        raise errors.unauthorized("invalid_header",
                                  "token is not a JWT: its header or payload cannot be decoded") from None
    parsed_here = None
    if header is None:
        header = parse_json_object(raw_header, "header", "invalid_header")
        parsed_here = encoded_header
    signing_input = data[:len(encoded_header) + 1 + len(encoded_payload)]  # "header.payload", as sent
    return header, raw_payload, signing_input, signature, parsed_here


def _number(claims: dict, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    kind = type(value)  # exact types: JSON gives no subclasses, and bool (an int subclass) is refused
    if kind is not int and kind is not float:
        raise errors.unauthorized("invalid_claims", f"claim {name} must be a number of seconds since the epoch")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise errors.unauthorized("invalid_claims", f"claim {name} must be a finite number of seconds")
    return number


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def granted_scopes(claims: dict, scope_claims: tuple[tuple[str, ...], ...]) -> frozenset[str]:
    """Scopes from space-separated strings or lists of strings; whole tokens only.

    Split on SP alone (RFC 6749 §3.3): str.split() would also cut at NBSP, U+2003 or
    U+001F, turning one odd scope name such as "read:user<NBSP>read:admin" into two grants.
    """
    if len(scope_claims) == 1:  # the usual provider: one claim, a string the issuer writes the same way every time
        text = lookup(claims, scope_claims[0])
        if type(text) is str:
            scopes = _SCOPES_OF_TEXT.get(text)
            if scopes is None:
                scopes = _shared(frozenset(text.split(" ")) - _EMPTY)
                if len(_SCOPES_OF_TEXT) < 4096:
                    _SCOPES_OF_TEXT[text] = scopes
            return scopes
    granted: set[str] = set()
    for path in scope_claims:
        value = lookup(claims, path)
        if isinstance(value, str):
            granted.update(value.split(" "))  # the empty strings of repeated spaces go below
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str) and item and not item.isspace())
    granted.discard("")
    return _shared(frozenset(granted))


def _shared(scopes: frozenset[str]) -> frozenset[str]:
    """A few distinct scope sets serve many tokens: share one object per set in the token cache."""
    if len(_SCOPE_SETS) < 4096:
        return _SCOPE_SETS.setdefault(scopes, scopes)
    return _SCOPE_SETS.get(scopes, scopes)


_EMPTY = frozenset(("",))  # what repeated, leading or trailing spaces leave between the scopes
_SCOPE_SETS: dict[frozenset, frozenset] = {}
_SCOPES_OF_TEXT: dict[str, frozenset] = {}  # a one-claim provider's scope string -> its scope set
_SCOPE_HEADERS: dict[frozenset, str] = {}  # X-Auth-Scopes of each scope set found valid


def _scopes_header(scopes: frozenset[str]) -> str:
    """X-Auth-Scopes: the scopes sorted and SP-separated, refused if one holds a space or a control character.

    A list item "a b" would read as two scopes upstream.  Every scope is non-empty, so the
    joined text has exactly len - 1 spaces unless one of them holds a space.
    """
    header = _SCOPE_HEADERS.get(scopes)
    if header is None:
        header = " ".join(sorted(scopes))
        if _CONTROL.search(header) is not None or header.count(" ") != max(len(scopes) - 1, 0):
            raise errors.unauthorized("invalid_claims", "granted scopes must not contain spaces or control characters")
        if len(_SCOPE_HEADERS) < 4096:  # like _SCOPE_SETS: a few distinct sets serve many tokens
            _SCOPE_HEADERS[scopes] = header
    return header


def issuer_not_accepted(provider: ProviderConfig, allowed: frozenset[str],
                        providers: Iterable[ProviderConfig]) -> errors.Rejection:
    """401 for a valid provider's token on a route that accepts others: says the token's iss and the accepted ones
    (as Envoy's jwt_authn does), whether the route says `providers:` or its rule does."""
    accepted = sorted(p.issuer for p in providers if p.name in allowed)
    which = f"accepted issuers: {', '.join(accepted)}" if accepted else "no issuer is accepted here"
    return errors.unauthorized("invalid_token", f"the token's issuer {provider.issuer} is not accepted on this route; "
                                                f"{which}")


class Verifier:
    def __init__(self, caches: dict[str, JwksCache], clock=time.time):
        self.by_issuer: dict[str, tuple[ProviderConfig, JwksCache]] = {
            cache.provider.issuer: (cache.provider, cache) for cache in caches.values()
        }
        self.clock = clock

    def provider_of(self, payload: dict) -> tuple[ProviderConfig, JwksCache]:
        issuer = payload.get("iss")
        if not isinstance(issuer, str):
            raise errors.unauthorized("invalid_claims", "token has no iss claim (a string naming its issuer)")
        found = self.by_issuer.get(issuer)
        if found is None:
            raise errors.unauthorized("invalid_claims", "token issuer is not one this gateway trusts")
        return found

    async def verify_bearer(self, token: str, allowed: frozenset[str] | None) -> Identity:
        header, raw_payload, signing_input, signature, parsed_header = _split(token)
        payload = parse_json_object(raw_payload, "payload")
        provider, cache = self.provider_of(payload)
        if allowed is not None and provider.name not in allowed:
            raise issuer_not_accepted(provider, allowed, (known for known, _ in self.by_issuer.values()))
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in provider.algorithms:
            raise errors.unauthorized("invalid_header", f"token algorithm {algorithm!r} is not accepted; "
                                                        f"expected one of {', '.join(provider.algorithms)}")
        if "crit" in header:
            raise errors.unauthorized("invalid_header", "token header lists critical extensions this gateway does not implement")
        if provider.typ is not None:
            typ = header.get("typ")
            accepted = _TYP_ALIASES.get(provider.typ.lower(), {provider.typ.lower()})
            if not isinstance(typ, str) or typ.lower() not in accepted:
                raise errors.unauthorized("invalid_header", f"token typ must be {provider.typ!r}")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise errors.unauthorized("invalid_header", "token kid must be a string")
        if not cache.loaded:
            raise errors.keys_unavailable(provider.name)
        key = cache.lookup(kid, algorithm)  # a published key: no coroutine; otherwise key_for may refresh
        if key is None:
            key = await cache.key_for(kid, algorithm)
        if key is None:
            raise errors.unauthorized("invalid_signature", "no published signing key matches the token's kid and alg")
        try:  # the key object was built for exactly this algorithm (JwksCache), so it checks alg too
            verified = signature_verifies(key, signing_input, signature)
        except Exception:  # InvalidSignature; and a malformed signature must never become a 500
            verified = False
        if not verified:
            raise errors.unauthorized("invalid_signature", "token signature does not verify")
        if parsed_header is not None and len(_VERIFIED_HEADERS) < _VERIFIED_HEADERS_MAX:
            _VERIFIED_HEADERS.setdefault(parsed_header, header)
        return self.check_claims(payload, provider, (kid, algorithm, key), raw_payload)

    def check_claims(self, claims: dict, provider: ProviderConfig, key_ref: tuple, raw_payload: bytes) -> Identity:
        now = self.clock()
        leeway = provider.leeway
        exp = _number(claims, "exp")
        if exp is None:
            raise errors.unauthorized("invalid_claims", "token has no exp claim; tokens without expiry are refused")
        nbf = _number(claims, "nbf")
        iat = _number(claims, "iat")
        if now > exp + leeway:
            raise errors.unauthorized("token_expired", "token is expired")
        if nbf is not None and now < nbf - leeway:
            raise errors.unauthorized("invalid_claims", "token is not valid yet (nbf)")
        if iat is not None and iat > now + leeway:
            raise errors.unauthorized("invalid_claims", "token was issued in the future (iat)")
        if provider.max_lifetime is not None:
            if iat is None:
                raise errors.unauthorized("invalid_claims", "token has no iat claim, needed to check max_lifetime")
            if exp - iat > provider.max_lifetime:
                raise errors.unauthorized("invalid_claims", "token lifetime exceeds this provider's max_lifetime")
        audience = claims.get("aud")
        if isinstance(audience, str):
            accepted = audience in provider.audiences
        elif isinstance(audience, list) and all(isinstance(a, str) for a in audience):
            accepted = not provider.audiences.isdisjoint(audience)
        else:
            raise errors.unauthorized("invalid_claims", "token aud must be a string or a list of strings")
        if not accepted:
            raise errors.unauthorized("invalid_claims", "incorrect audience: the token was issued for another API")
        for path in provider.required_claims:
            if lookup(claims, path) in (MISSING, None):
                raise errors.unauthorized("invalid_claims", f"token lacks the required claim {format_claim_path(path)}")
        subject = claims.get("sub")
        if subject is not None and (not isinstance(subject, str) or _has_control(subject)):
            raise errors.unauthorized("invalid_claims", "claim sub must be a string without control characters")
        scopes = granted_scopes(claims, provider.scope_claims)
        # validates cnf; a DPoP binding's key is checked on every request
        binding = confirmation_headers(claims) if "cnf" in claims else ()
        jkt = claims["cnf"][JKT] if binding and binding[0][1] == DPOP_BINDING else None
        headers = (
            (SUBJECT_HEADER, subject or ""),
            (ISSUER_HEADER, provider.issuer),
            (SCOPES_HEADER, _scopes_header(scopes)),
            (CLAIMS_HEADER, base64url_encode(raw_payload)),
        )
        if binding or provider.forward_claims:
            headers += binding + _forwarded_claims(claims, provider)
        return Identity(provider.name, provider.issuer, subject, claims, scopes, exp + leeway, headers, key_ref, jkt)


def _forwarded_claims(claims: dict, provider: ProviderConfig) -> tuple[tuple[str, str], ...]:
    """Configured claim headers: strings as they are, anything else as compact JSON."""
    headers = []
    for header, path in provider.forward_claims:
        value = lookup(claims, path)
        if value is MISSING or value is None:
            continue
        if isinstance(value, str):
            if _has_control(value):
                raise errors.unauthorized("invalid_claims", f"claim for {header} contains control characters")
            headers.append((header, value))
        else:
            headers.append((header, json.dumps(value, separators=(",", ":"))))
    return tuple(headers)


def base64url_encode(raw: bytes) -> str:
    """`base64.urlsafe_b64encode` unpadded, in the C calls it makes (without its Python wrappers)."""
    return binascii.b2a_base64(raw, newline=False).translate(_TO_BASE64URL).rstrip(b"=").decode("ascii")
