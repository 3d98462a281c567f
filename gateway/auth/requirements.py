"""Access rules: what a route demands of a verified token (Envoy calls this tree the verifier, its rules requirements).

Rules are immutable objects built once from routes.yaml.  They read only the
verified payload (an `Identity`), never anything the client sent alongside.
Scope matching is by whole scope string, never by substring.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from gateway.auth.claim_path import MISSING, format_claim_path, lookup
from gateway.auth.identity import Identity


class TokenNeed(enum.Enum):
    NONE = "none"  # public: the token is not even looked at
    OPTIONAL = "optional"  # no token is fine; a present one must be valid
    REQUIRED = "required"


@dataclass(frozen=True)
class Denial:
    """Why a valid token is not enough; `scopes` feed WWW-Authenticate's scope=."""

    description: str
    scopes: tuple[str, ...] = ()


def _claim_value_equals(expected: Any, actual: Any) -> bool:
    """Equality that keeps YAML's true apart from a claim's 1."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


def _members(actual: Any) -> list:
    """A list claim's items, or a scalar claim as a one-item list."""
    if isinstance(actual, list):
        return actual
    if actual is MISSING:
        return []
    return [actual]


def _has(actual: Any, expected: Any) -> bool:
    return any(_claim_value_equals(expected, item) for item in _members(actual))


@dataclass(frozen=True)
class ClaimCondition:
    """One test on one claim path.

    kind is one of: equals (the claim is the value, or a list holding it),
    one_of (holds at least one), all_of (holds every one), present (exists or not).
    """

    path: tuple[str, ...]
    kind: str
    values: tuple = ()
    present: bool = True

    def check(self, claims: Any) -> Denial | None:
        actual = lookup(claims, self.path)
        name = format_claim_path(self.path)
        if self.kind == "present":  # null is absent, as in required_claims
            if (actual is not MISSING and actual is not None) == self.present:
                return None
            return Denial(f"claim {name} must {self.wording()}")
        if self.kind == "all_of":
            ok = all(_has(actual, value) for value in self.values)
        else:  # equals and one_of
            ok = any(_has(actual, value) for value in self.values)
        if ok:
            return None
        return Denial(f"claim {name} must {self.wording()}")

    def wording(self) -> str:
        """The whole condition with its values, as a verb phrase: "equal 'analyst'", "include one of 'a', 'b'"."""
        if self.kind == "present":
            return "be present" if self.present else "not be present"
        wanted = ", ".join(repr(v) for v in self.values)
        return {"equals": "equal", "one_of": "include one of", "all_of": "include all of"}[self.kind] + f" {wanted}"

    def describe(self) -> str:
        return f"claim {format_claim_path(self.path)} must {self.wording()}"


class AccessRule:
    token: TokenNeed = TokenNeed.REQUIRED

    def check(self, identity: Identity) -> Denial | None:  # pragma: no cover - interface
        raise NotImplementedError

    def accepted_providers(self) -> frozenset[str] | None:
        """The providers whose tokens can ever satisfy this rule (None: any).  The loader hoists them to the
        route, so a token from any other provider is refused as the route's own `providers:` refuses it."""
        return None

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class TokenOnly(AccessRule):
    """public, optional or authenticated: a rule about whether a token is needed, none about its claims."""

    token: TokenNeed = TokenNeed.REQUIRED

    def check(self, identity: Identity) -> Denial | None:
        return None

    def describe(self) -> str:
        return _TOKEN_WORDS[self.token]


_TOKEN_WORDS = {TokenNeed.NONE: "public", TokenNeed.OPTIONAL: "optional", TokenNeed.REQUIRED: "authenticated"}
PUBLIC = TokenOnly(TokenNeed.NONE)
OPTIONAL_TOKEN = TokenOnly(TokenNeed.OPTIONAL)
AUTHENTICATED = TokenOnly(TokenNeed.REQUIRED)


@dataclass(frozen=True)
class Requirement(AccessRule):
    """Every listed condition must hold (an empty one means any valid token)."""

    scopes: frozenset[str] = frozenset()
    any_scopes: frozenset[str] = frozenset()
    claims: tuple[ClaimCondition, ...] = ()
    providers: frozenset[str] | None = None

    def check(self, identity: Identity) -> Denial | None:
        if self.providers is not None and identity.provider not in self.providers:
            return Denial(f"tokens from provider {identity.provider!r} are not accepted here")
        missing = self.scopes - identity.scopes
        if missing:
            return Denial(
                "missing scope " + " ".join(sorted(missing)), tuple(sorted(self.scopes))
            )
        if self.any_scopes and not (self.any_scopes & identity.scopes):
            return Denial(
                "needs one of the scopes " + " ".join(sorted(self.any_scopes)),
                tuple(sorted(self.any_scopes)),
            )
        for condition in self.claims:
            denial = condition.check(identity.claims)
            if denial is not None:
                return denial
        return None

    def describe(self) -> str:
        parts = []
        if self.scopes:
            parts.append("scopes " + " ".join(sorted(self.scopes)))
        if self.any_scopes:
            parts.append("any of scopes " + " ".join(sorted(self.any_scopes)))
        for condition in self.claims:
            parts.append(condition.describe())
        if self.providers is not None:
            parts.append("providers " + ",".join(sorted(self.providers)))
        return "; ".join(parts) or "authenticated"

    def accepted_providers(self) -> frozenset[str] | None:
        return self.providers


@dataclass(frozen=True)
class AllOf(AccessRule):
    rules: tuple[AccessRule, ...]

    def check(self, identity: Identity) -> Denial | None:
        for rule in self.rules:
            denial = rule.check(identity)
            if denial is not None:
                return denial
        return None

    def describe(self) -> str:
        return "all of (" + " | ".join(r.describe() for r in self.rules) + ")"

    def accepted_providers(self) -> frozenset[str] | None:
        return intersect_providers(r.accepted_providers() for r in self.rules)


@dataclass(frozen=True)
class AnyOf(AccessRule):
    rules: tuple[AccessRule, ...]

    def check(self, identity: Identity) -> Denial | None:
        denials = []
        for rule in self.rules:
            denial = rule.check(identity)
            if denial is None:
                return None
            denials.append(denial)
        scopes = tuple(sorted({s for d in denials for s in d.scopes}))
        return Denial("none of the alternatives holds: " + "; ".join(d.description for d in denials), scopes)

    def describe(self) -> str:
        return "any of (" + " | ".join(r.describe() for r in self.rules) + ")"

    def accepted_providers(self) -> frozenset[str] | None:
        accepted = [r.accepted_providers() for r in self.rules]
        return None if None in accepted else frozenset().union(*accepted)


def intersect_providers(sets) -> frozenset[str] | None:
    """Providers allowed by every restriction (None: no restriction at all)."""
    result = None
    for accepted in sets:
        if accepted is not None:
            result = accepted if result is None else result & accepted
    return result
