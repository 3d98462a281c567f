"""Verifier: turns a compact JWS into an Identity, or a 401 that names the problem.

Order matters: the provider is chosen by `iss` before any network or crypto
work (an unknown issuer costs nothing), the algorithm must be one the
provider allows and the key must be the published key the `kid` names, and
only then are the claims, read from the verified bytes, checked.  `jku`,
`x5u`, `jwk` and `x5c` headers are never read.
"""
from __future__ import annotations

import base64
import json
import math
import time
from typing import Any, NamedTuple

from jose.utils import base64url_decode

from . import errors
from .claim_path import MISSING, format_claim_path, lookup
from .config import ProviderConfig
from .identity import Identity
from .jwks_cache import JwksCache

SUBJECT_HEADER = "X-Auth-Subject"
ISSUER_HEADER = "X-Auth-Issuer"
SCOPES_HEADER = "X-Auth-Scopes"
CLAIMS_HEADER = "X-Auth-Claims"
IDENTITY_HEADERS = (SUBJECT_HEADER, ISSUER_HEADER, SCOPES_HEADER, CLAIMS_HEADER)
_TYP_ALIASES = {"at+jwt": {"at+jwt", "application/at+jwt"}}
MAX_JSON_DEPTH = 32  # claim sets are shallow; deeper JSON is refused before anyone walks it


def _strict_object(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


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
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_strict_object, parse_constant=_not_json)
    except RecursionError:
        raise errors.unauthorized(code, f"token {what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.unauthorized(code, f"token {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise errors.unauthorized(code, f"token {what} is not a JSON object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise errors.unauthorized(code, f"token {what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


class SplitToken(NamedTuple):
    header: dict  # strictly parsed, not yet trusted
    payload: bytes  # raw, not yet trusted
    signing_input: bytes  # what the signature covers
    signature: bytes


def split_token(token: str) -> SplitToken:
    """A compact JWS decoded once: the header strictly parsed, the rest as bytes, nothing trusted yet.

    Parsed here rather than by python-jose's lenient reader, whose RecursionError on a deeply
    nested header would escape as a 500 and which lets a repeated key silently win; and once,
    because `jws.verify` would decode the whole token again on every cache miss.
    """
    try:
        encoded_header, encoded_payload, encoded_signature = token.split(".")
        raw_header = base64url_decode(encoded_header.encode("ascii"))
        raw_payload = base64url_decode(encoded_payload.encode("ascii"))
        signature = base64url_decode(encoded_signature.encode("ascii"))
    except ValueError:  # wrong part count, non-ASCII, bad base64 (binascii.Error)
        raise errors.unauthorized("invalid_header",
                                  "token is not a JWT: its header or payload cannot be decoded") from None
    header = parse_json_object(raw_header, "header", "invalid_header")
    signing_input = f"{encoded_header}.{encoded_payload}".encode("ascii")
    return SplitToken(header, raw_payload, signing_input, signature)


def _number(claims: dict, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.unauthorized("invalid_claims", f"claim {name} must be a number of seconds since the epoch")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise errors.unauthorized("invalid_claims", f"claim {name} must be a finite number of seconds")
    return number


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def granted_scopes(claims: dict, scope_claims: tuple[tuple[str, ...], ...]) -> frozenset[str]:
    """Scopes from space-separated strings or lists of strings; whole tokens only.

    Split on SP alone (RFC 6749 §3.3): str.split() would also cut at NBSP, U+2003 or
    U+001F, turning one odd scope name such as "read:user<NBSP>read:admin" into two grants.
    """
    granted: set[str] = set()
    for path in scope_claims:
        value = lookup(claims, path)
        if isinstance(value, str):
            granted.update(part for part in value.split(" ") if part)
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str) and item and not item.isspace())
    scopes = frozenset(granted)
    if len(_SCOPE_SETS) < 4096:  # a few distinct sets serve many tokens: share them in the token cache
        return _SCOPE_SETS.setdefault(scopes, scopes)
    return _SCOPE_SETS.get(scopes, scopes)


_SCOPE_SETS: dict[frozenset, frozenset] = {}


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
        header, raw_payload, signing_input, signature = split_token(token)
        payload = parse_json_object(raw_payload, "payload")
        provider, cache = self.provider_of(payload)
        if allowed is not None and provider.name not in allowed:
            raise errors.unauthorized("invalid_token", f"tokens from provider {provider.name!r} are not accepted on this route")
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
        key = await cache.key_for(kid, algorithm)
        if key is None:
            raise errors.unauthorized("invalid_signature", "no published signing key matches the token's kid and alg")
        try:  # the key object was built for exactly this algorithm (JwksCache), so it checks alg too
            verified = key.verify(signing_input, signature)
        except Exception:  # a malformed signature must never become a 500
            verified = False
        if not verified:
            raise errors.unauthorized("invalid_signature", "token signature does not verify")
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
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise errors.unauthorized("invalid_claims", "token aud must be a string or a list of strings")
        if not provider.audiences.intersection(audiences):
            raise errors.unauthorized("invalid_claims", "incorrect audience: the token was issued for another API")
        for path in provider.required_claims:
            if lookup(claims, path) in (MISSING, None):
                raise errors.unauthorized("invalid_claims", f"token lacks the required claim {format_claim_path(path)}")
        subject = claims.get("sub")
        if subject is not None and (not isinstance(subject, str) or _has_control(subject)):
            raise errors.unauthorized("invalid_claims", "claim sub must be a string without control characters")
        scopes = granted_scopes(claims, provider.scope_claims)
        if any(_has_control(s) or " " in s for s in scopes):  # a list item "a b" would read as two in X-Auth-Scopes
            raise errors.unauthorized("invalid_claims", "granted scopes must not contain spaces or control characters")
        headers = (
            (SUBJECT_HEADER, subject or ""),
            (ISSUER_HEADER, provider.issuer),
            (SCOPES_HEADER, " ".join(sorted(scopes))),
            (CLAIMS_HEADER, _b64url(raw_payload)),
        ) + _forwarded_claims(claims, provider)
        return Identity(
            provider=provider.name,
            issuer=provider.issuer,
            subject=subject,
            claims=claims,
            scopes=scopes,
            expires_at=exp + leeway,
            upstream_headers=headers,
            key_ref=key_ref,
        )


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


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
