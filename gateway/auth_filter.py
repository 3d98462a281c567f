"""The filter: one request through the whole pipeline.

canonical path -> route table -> bearer extractor -> authenticator (token
cache, JWKS cache, verifier) -> access rule -> header hygiene -> forwarder.
Any doubt ends in a JSON 4xx/5xx and the request never reaches the upstream.
"""
from __future__ import annotations

import logging
import time

from aiohttp import web

from . import errors
from .authenticator import Authenticator
from .canonical_path import PathRejected, canonicalize
from .config import GatewayConfig
from .extractor import extract_bearer
from .forwarder import Forwarder
from .headers import upstream_request_headers
from .policy import TokenNeed
from .route_table import MethodNotAllowed, Route

log = logging.getLogger("gateway.access")


class AuthFilter:
    def __init__(self, config: GatewayConfig, authenticator: Authenticator, forwarder: Forwarder):
        self.config = config
        self.authenticator = authenticator
        self.forwarder = forwarder

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        route = None
        cors_headers = None
        try:
            path, query = self._target(request.raw_path)
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers \
                    and "Origin" in request.headers:
                preflight = self._preflight(request, path)
                if preflight is not None:
                    return preflight
            route = self._route(request.method, path)
            if route.cors is not None:
                cors_headers = route.cors.response_headers(request.headers.get("Origin"))
            identity = None
            if route.access.token is not TokenNeed.NONE:
                token = extract_bearer(request.headers, self.config.limits.max_token_bytes)
                if token is None:
                    if route.access.token is TokenNeed.REQUIRED:
                        raise errors.missing_token()
                else:
                    identity = await self.authenticator.authenticate(token, route.providers)
                    denial = route.access.check(identity)
                    if denial is not None:
                        raise errors.insufficient_scope(denial.description, denial.scopes)
            headers = upstream_request_headers(
                request.headers, identity, self.config.forward_authorization,
                request.remote, request.scheme, self.config.identity_headers)
            response = await self.forwarder.forward(request, path, query, headers, cors_headers)
        except errors.Rejection as rejection:
            response = rejection.response(self.config.realm)
            if cors_headers:
                response.headers.update(cors_headers)
            _log(request, route, response.status, rejection.code, started)
            return response
        _log(request, route, response.status, "allowed", started)
        return response

    def _target(self, raw: str) -> tuple[str, str]:
        path, _, query = raw.partition("?")
        try:
            return canonicalize(path), query
        except PathRejected as exc:
            raise errors.bad_request("invalid_path", str(exc)) from None

    def _preflight(self, request: web.BaseRequest, path: str) -> web.StreamResponse | None:
        """A CORS preflight for a route with CORS enabled is answered here, without auth."""
        method = request.headers["Access-Control-Request-Method"]
        route = self.config.routes.match(method, path)
        if not isinstance(route, Route) or route.cors is None:
            return None
        return route.cors.preflight(request.headers["Origin"], method,
                                    request.headers.get("Access-Control-Request-Headers"))

    def _route(self, method: str, path: str) -> Route:
        match = self.config.routes.match(method, path)
        if isinstance(match, Route):
            return match
        if isinstance(match, MethodNotAllowed):
            raise errors.method_not_allowed(match.allow)
        raise errors.not_found()


def _log(request: web.BaseRequest, route: Route | None, status: int, decision: str, started: float) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s route=%s status=%d decision=%s ms=%.2f", request.method, request.path,
                 route.pattern if route else "-", status, decision, (time.monotonic() - started) * 1000)
