"""The access decision on its own: target -> route -> token -> rule.

The filter, `explain` and `test` all take these same steps, so what the
tools report is what the gateway does.  Every step either returns or raises
an `errors.Rejection`; nothing here forwards anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from gateway import errors
from gateway.pipeline.canonical_path import PathRejected, split_target
from gateway.auth.identity import Identity
from gateway.auth.requirements import TokenNeed
from gateway.pipeline.route_table import MethodNotAllowed, Route, RouteTable


class Authenticating(Protocol):
    def authenticate(self, credential: Any, allowed: frozenset[str] | None) -> Awaitable[Identity]: ...


def target(raw: str, allow_params: bool = False) -> tuple[str, str]:
    """(canonical path, query) or 400 invalid_path."""
    try:
        return split_target(raw, allow_params)
    except PathRejected as exc:
        raise errors.bad_request("invalid_path", str(exc)) from None


def route_for(routes: RouteTable, method: str, path: str) -> Route:
    """The first matching route, or 405 with Allow, or 404: fail closed."""
    match = routes.match(method, path)
    if isinstance(match, Route):
        return match
    if isinstance(match, MethodNotAllowed):
        raise errors.method_not_allowed(match.allow)
    raise errors.not_found()


async def identify(route: Route, read_credential: Callable[[], Any], authenticator: Authenticating) -> Identity | None:
    """The verified identity the route needs, None where it needs none; the credential is read only if looked at."""
    credential = credential_for(route, read_credential)
    if credential is None:
        return None
    return await authenticator.authenticate(credential, route.providers)


def credential_for(route: Route, read_credential: Callable[[], Any]) -> Any:
    """The credential to authenticate: None where the route needs none or may go without; 401 where it is missing."""
    if route.access.token is TokenNeed.NONE:
        return None
    credential = read_credential()
    if credential is None and route.access.token is TokenNeed.REQUIRED:
        raise errors.missing_token()
    return credential


def enforce(route: Route, identity: Identity | None) -> None:
    """The route's access rule against a verified identity: 403 naming what is missing."""
    if identity is None:
        return
    denial = route.access.check(identity)
    if denial is not None:
        raise errors.insufficient_scope(denial.description, denial.scopes)


@dataclass(frozen=True)
class Outcome:
    """What the gateway would answer, without forwarding: 200 stands for "forwarded upstream"."""

    status: int
    code: str
    description: str
    path: str | None
    route: Route | None
    identity: Identity | None
    allow: str | None = None  # the Allow header of a 405

    @property
    def allowed(self) -> bool:
        return self.status == 200


async def evaluate(routes: RouteTable, method: str, raw_target: str, read_credential: Callable[[], Any],
                   authenticator: Authenticating, allow_params: bool = False) -> Outcome:
    path = route = identity = None
    try:
        path, _ = target(raw_target, allow_params)
        route = route_for(routes, method, path)
        identity = await identify(route, read_credential, authenticator)
        enforce(route, identity)
    except errors.Rejection as rejection:
        return Outcome(rejection.status, rejection.code, rejection.description, path, route, identity,
                       rejection.headers.get("Allow"))
    return Outcome(200, "allowed", "the request would be forwarded to the upstream", path, route, identity)
