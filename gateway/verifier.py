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
import time
from typing import Any

from jose import jws
from jose.exceptions import JOSEError

from . import errors
from .claim_path import MISSING, lookup
from .config import ProviderConfig
from .identity import Identity
from .jwks_cache import JwksCache

SUBJECT_HEADER = "X-Auth-Subject"
ISSUER_HEADER = "X-Auth-Issuer"
SCOPES_HEADER = "X-Auth-Scopes"
CLAIMS_HEADER = "X-Auth-Claims"
IDENTITY_HEADERS = (SUBJECT_HEADER, ISSUER_HEADER, SCOPES_HEADER, CLAIMS_HEADER)
_TYP_ALIASES = {"at+jwt": {"at+jwt", "application/at+jwt"}}


def _strict_object(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json_object(raw: bytes, what: str) -> dict:
    """Strict JSON: duplicate keys are refused so no two readers can disagree."""
    try:
        value = json.loads(raw, object_pairs_hook=_strict_object)
    except RecursionError:
        raise errors.unauthorized("invalid_token", f"token {what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.unauthorized("invalid_token", f"token {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise errors.unauthorized("invalid_token", f"token {what} is not a JSON object")
    return value


def _number(claims: dict, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.unauthorized("invalid_claims", f"claim {name} must be a number of seconds since the epoch")
    return float(value)


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def granted_scopes(claims: dict, scope_claims: tuple[tuple[str, ...], ...]) -> frozenset[str]:
    """Scopes from space-separated strings or lists of strings; whole tokens only."""
    granted: set[str] = set()
    for path in scope_claims:
        value = lookup(claims, path)
        if isinstance(value, str):
            granted.update(value.split())
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str) and item and not item.isspace())
    return frozenset(granted)


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
        try:
            header = jws.get_unverified_header(token)
            raw_payload = jws.get_unverified_claims(token)
        except JOSEError:
            raise errors.unauthorized("invalid_header", "token is not a JWT: its header or payload cannot be decoded") from None
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
        try:
            jws.verify(token, key, [algorithm])
        except JOSEError:
            raise errors.unauthorized("invalid_signature", "token signature does not verify") from None
        except Exception:  # a malformed signature must never become a 500
            raise errors.unauthorized("invalid_signature", "token signature does not verify") from None
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
        for name in provider.required_claims:
            if lookup(claims, (name,)) is MISSING:
                raise errors.unauthorized("invalid_claims", f"token lacks the required claim {name}")
        subject = claims.get("sub")
        if subject is not None and (not isinstance(subject, str) or _has_control(subject)):
            raise errors.unauthorized("invalid_claims", "claim sub must be a string without control characters")
        scopes = granted_scopes(claims, provider.scope_claims)
        if any(_has_control(s) for s in scopes):
            raise errors.unauthorized("invalid_claims", "granted scopes must not contain control characters")
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
