"""The filter: one request through the whole pipeline.

canonical path -> route table -> bearer extractor -> authenticator (token
cache, JWKS cache, verifier) -> access rule -> header hygiene -> forwarder.
Any doubt ends in a JSON 4xx/5xx and the request never reaches the upstream.

Two entries share every step: `handle` (aiohttp's request handler: any
request, forwarded here) and `admit`/`admit_pending` (the fast connection,
ops/client_connection.py, which forwards what they admit itself; `admit`
also answers from the decision cache what it admitted before).
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable, NamedTuple

from aiohttp import web
from multidict import CIMultiDict

from gateway.observe import access_log
from gateway.pipeline import decide
from gateway.pipeline.csrf import check_websocket_origin
from gateway import errors
from gateway.observe.access_log import AccessRecord, request_id, safe_path
from gateway.auth.authenticator import Authenticator
from gateway.auth.dpop import ProofRequest
from gateway.auth.identity import Identity
from gateway.auth.binding import CLIENT_CERT_HEADER, certificate_thumbprint, check_binding
from gateway.config.model import GatewayConfig
from gateway.proxy.body_stream import answer_and_close, must_close_after_refusal
from gateway.proxy.forwarded import client_origin, is_trusted
from gateway.proxy.forwarder import Forwarder
from gateway.proxy.token_expiry import ENDED_BY
from gateway.proxy.headers import upstream_request_headers
from gateway.pipeline.decision_cache import Decision, DecisionCache
from gateway.pipeline.route_table import Route
from gateway.auth.token_sources import HEADER, HEADER_ONLY, drop_tokens, find_token
from gateway.errors import BEARER
from gateway.proxy.websocket_relay import is_websocket_upgrade


Routed = tuple  # (canonical path, query, route, CORS headers or None, WebSocket upgrade?)
Admitted = tuple  # (query, upstream headers, extra answer headers or None, token expiry or None)


class Admission(NamedTuple):
    """A request the fast path decided to forward (`AuthFilter.admit`)."""

    record: AccessRecord
    path: str
    query: str
    headers: CIMultiDict
    extra_headers: dict[str, str] | None
    expires_at: float | None
    cors_headers: dict[str, str] | None = None  # the route's: a refusal after admission (502, 504) carries them


class Answered(NamedTuple):
    """A request the filter answered itself (a refusal, a preflight), with its access record."""

    record: AccessRecord
    response: web.Response


class Pending(NamedTuple):
    """A request `admit` decided up to its credential, which has to be verified (or its proof checked)."""

    record: AccessRecord
    path: str
    query: str
    route: Route
    cors_headers: dict[str, str] | None
    websocket: bool
    credential: str | ProofRequest
    scheme: str | None  # the scheme the token came with: its challenge carries the error


def new_record(request: web.BaseRequest) -> AccessRecord:
    return AccessRecord(request_id(request.headers.get("X-Request-Id")), request.method, safe_path(request.raw_path))


class AuthFilter:
    def __init__(self, config: GatewayConfig, authenticator: Authenticator, forwarder: Forwarder,
                 observe: Callable[[AccessRecord], None] = access_log.write):
        self.config = config
        self.authenticator = authenticator
        self.forwarder = forwarder
        self.observe = observe  # the access log line and the metrics, once per request
        self.route_challenges = {id(route): route_challenges(config, route) for route in config.routes.routes}
        self.nonce_providers = frozenset(p.name for p in config.providers if p.dpop is not None and p.dpop.nonce)
        self.asks_client_certs = config.tls is not None and config.tls.client_certs != "none"
        self.binding_required = frozenset(p.name for p in config.providers if p.token_binding == "required")
        self.decisions = DecisionCache(authenticator.caches, authenticator.token_cache, authenticator.clock)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """The general path: any request, with whatever it needs awaited (a signature check, a DPoP proof, a body)."""
        started = time.monotonic()
        record = new_record(request)
        route = None
        cors_headers = None
        examining = False
        scheme_used: list[str | None] = [None]  # the scheme the token came with: its challenge carries the error
        try:
            routed = self._route(request, record)
            if type(routed) is not tuple:
                return routed
            path, query, route, cors_headers, websocket = routed
            examining = True
            identity = await decide.identify(route, lambda: self._credential(request, route, scheme_used),
                                             self.authenticator)
            examining = False
            admitted = self._admit(request, route, identity, record, query, cors_headers, websocket)
            forwarding = time.monotonic()
            try:
                response = await self.forwarder.forward(request, path, *admitted)
            finally:
                record.upstream_ms = (time.monotonic() - forwarding) * 1000
            record.status, record.reason = response.status, response.get(ENDED_BY, "forwarded")
        except errors.Rejection as rejection:
            response = self.refusal(request, record, rejection, route, cors_headers, scheme_used[0], examining)
            if must_close_after_refusal(request, rejection.status, rejection.code):
                await answer_and_close(request, response)
            return response
        except asyncio.CancelledError:
            record.status, record.reason = 499, "client_closed"
            raise
        finally:
            record.latency_ms = (time.monotonic() - started) * 1000
            self.observe(record)
        return response

    def admit(self, request: web.BaseRequest) -> Admission | Answered | Pending:
        """The fast path's decision: the same steps as `handle`, up to the upstream, without awaiting.

        A request whose token (if its route reads one) is a bearer token the token cache holds is
        admitted, or answered here (a refusal, a preflight) exactly as `handle` answers it.  A token
        to verify or a DPoP proof to check comes back Pending, with what was decided so far, for
        `admit_pending`.
        """
        key = self.decisions.key(request.method, request.raw_path, request.headers)
        decided = self.decisions.get(key) if key is not None else None
        if decided is not None:
            return self._admit_decided(request, decided)
        record = new_record(request)
        route = None
        cors_headers = None
        examining = False
        scheme_used: list[str | None] = [None]
        try:
            routed = self._route(request, record)
            if type(routed) is not tuple:
                return Answered(record, routed)
            path, query, route, cors_headers, websocket = routed
            examining = True
            credential = decide.credential_for(route, lambda: self._credential(request, route, scheme_used))
            identity = None
            if credential is not None:
                identity = self.authenticator.cached_bearer(credential, route.providers) \
                    if type(credential) is str else None
                if identity is None:  # a token to verify, or a DPoP proof to check
                    return Pending(record, path, query, route, cors_headers, websocket, credential, scheme_used[0])
            examining = False
            admitted = self._admit(request, route, identity, record, query, cors_headers, websocket)
        except errors.Rejection as rejection:
            return Answered(record, self.refusal(request, record, rejection, route, cors_headers, scheme_used[0],
                                                 examining))
        if key is not None and self._decision_to_keep(request, route, websocket):
            self.decisions.put(key, Decision(path, query, route, identity, self._forwards_authorization(route, identity),
                                             admitted[3]))
        return Admission(record, path, *admitted, cors_headers)

    def _decision_to_keep(self, request: web.BaseRequest, route: Route, websocket: bool) -> bool:
        """Whether an admission depends on nothing but (method, target, Authorization) and the rules: no
        preflight, CORS or CSRF (Origin, cookies), no query or cookie token, no client certificate, no
        DPoP nonce (it rotates).  (`DecisionCache.key` also leaves out requests with a DPoP header.)"""
        return (request.method != "OPTIONS" and route.token_from == HEADER_ONLY and route.cors is None
                and route.csrf is None and not websocket and not self.asks_client_certs and not self.nonce_providers)

    def _admit_decided(self, request: web.BaseRequest, decided: Decision) -> Admission:
        """An admission from the decision cache: the request's own parts (record, upstream headers) built anew."""
        record = new_record(request)
        record.route = decided.route.pattern
        identity = decided.identity
        if identity is not None:
            record.subject, record.verification = identity.subject, "valid"
        headers = self._upstream_headers(request, identity, decided.forward_authorization, record.request_id, None,
                                         websocket=False)
        record.decision = "allow"
        return Admission(record, decided.path, decided.query, headers, None, decided.expires_at)

    async def admit_pending(self, request: web.BaseRequest, pending: Pending) -> Admission | Answered:
        """The rest of `admit` once the credential is authenticated (verified, its proof checked)."""
        record, route = pending.record, pending.route
        try:
            identity = await self.authenticator.authenticate(pending.credential, route.providers)
        except errors.Rejection as rejection:
            return Answered(record, self.refusal(request, record, rejection, route, pending.cors_headers,
                                                 pending.scheme, examining=True))
        try:
            admitted = self._admit(request, route, identity, record, pending.query, pending.cors_headers,
                                   pending.websocket)
        except errors.Rejection as rejection:
            return Answered(record, self.refusal(request, record, rejection, route, pending.cors_headers,
                                                 pending.scheme))
        return Admission(record, pending.path, *admitted, pending.cors_headers)

    def _route(self, request: web.BaseRequest, record: AccessRecord) -> Routed | web.StreamResponse:
        """Target, route and the checks that need no token: the route (a tuple), or a preflight's answer."""
        path, query = decide.target(request.raw_path, self.config.allow_path_params)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers \
                and "Origin" in request.headers:
            preflight = self._preflight(request, path)
            if preflight is not None:
                record.decision, record.reason, record.status = "allow", "cors_preflight", preflight.status
                return preflight
        route = decide.route_for(self.config.routes, request.method, path)
        record.route = route.pattern
        cors_headers = route.cors.response_headers(request.headers.get("Origin")) if route.cors is not None else None
        if route.csrf is not None:
            route.csrf.check(request.method, request.headers)
        websocket = is_websocket_upgrade(request)
        if websocket and route.token_from != HEADER_ONLY:
            check_websocket_origin(request.headers, route.token_from, route.csrf)
        return path, query, route, cors_headers, websocket

    def _admit(self, request: web.BaseRequest, route: Route, identity: Identity | None, record: AccessRecord,
               query: str, cors_headers: dict[str, str] | None, websocket: bool) -> Admitted:
        """The identity's binding and the route's rule; then what goes upstream: headers, query, extras, expiry."""
        presented = client_certificate_thumbprint(request) if self.asks_client_certs else None
        if identity is not None:
            try:
                check_binding(identity, presented, identity.provider in self.binding_required)
            except errors.Rejection as rejection:
                record.verification = rejection.code
                raise
            record.subject, record.verification = identity.subject, "valid"
        decide.enforce(route, identity)
        headers = self._upstream_headers(request, identity, self._forwards_authorization(route, identity),
                                         record.request_id, presented, websocket)
        if route.token_from != HEADER_ONLY and not self.config.forward_authorization:
            query = drop_tokens(route.token_from, query, headers)
        record.decision = "allow"
        extra_headers = cors_headers
        if identity is not None and identity.provider in self.nonce_providers:
            extra_headers = {**(cors_headers or {}), "DPoP-Nonce": self.authenticator.dpop.nonces.current()}
        expires_at = identity.expires_at if identity is not None and not route.streams_outlive_token else None
        return query, headers, extra_headers, expires_at

    def _forwards_authorization(self, route: Route, identity: Identity | None) -> bool:
        """The client's Authorization goes upstream only when configured, and when it carried the token verified."""
        return self.config.forward_authorization and identity is not None \
            and any(s.kind == HEADER for s in route.token_from)

    def _upstream_headers(self, request: web.BaseRequest, identity: Identity | None, forward_authorization: bool,
                          request_id: str, presented: str | None, websocket: bool) -> CIMultiDict:
        """What the upstream receives (proxy/headers.py), with the request id and the client certificate's hash."""
        headers = upstream_request_headers(
            request.headers, identity, forward_authorization, request.remote, request.scheme,
            self.config.identity_headers, trusted_peer=is_trusted(request.remote, self.config.clients.trusted_proxies),
            host=self.config.upstream.host, websocket=websocket)
        headers["X-Request-Id"] = request_id  # passed through, or generated here
        if presented is not None:
            headers[CLIENT_CERT_HEADER] = presented
        return headers

    def refusal(self, request: web.BaseRequest, record: AccessRecord, rejection: errors.Rejection,
                route: Route | None = None, cors_headers: dict[str, str] | None = None,
                scheme: str | None = None, examining: bool = False) -> web.Response:
        """A rejection as the client's answer, and its facts on the access record."""
        response = rejection.response(self.config.realm, self._challenges(route), scheme)
        if cors_headers:
            response.headers.update(cors_headers)
        record.status, record.reason = response.status, rejection.code
        if rejection.status == 403:
            record.detail = rejection.description  # the unmet condition, in the rule's words: config values only
        if examining and rejection.code != "authorization_header_missing":
            record.verification = rejection.code
        return response

    def _credential(self, request: web.BaseRequest, route: Route,
                    scheme_used: list[str | None]) -> str | ProofRequest | None:
        """The token alone (a bearer request), or with its DPoP proof(s) and what they are checked against."""
        found = find_token(request, route.token_from, self.config.limits.max_token_bytes)
        if found is None:
            return None
        scheme_used[0], token = found
        proofs = request.headers.getall("DPoP", ())
        if scheme_used[0] == BEARER and not proofs:
            return token
        return ProofRequest(token, scheme_used[0], tuple(proofs), request.method,
                            lambda: self._request_uri(request))

    def _request_uri(self, request: web.BaseRequest) -> str:
        """The URI the client addressed, without the query: what a DPoP proof's htu must name."""
        path = request.raw_path.partition("?")[0]
        if self.config.public_url:
            return self.config.public_url + path
        trusted = is_trusted(request.remote, self.config.clients.trusted_proxies)
        return client_origin(request.headers, request.scheme, trusted) + path

    def _challenges(self, route: Route | None) -> errors.Challenges:
        return self.route_challenges.get(id(route), errors.BEARER_ONLY)

    def _preflight(self, request: web.BaseRequest, path: str) -> web.StreamResponse | None:
        """A CORS preflight for a route with CORS enabled is answered here, without auth."""
        method = request.headers["Access-Control-Request-Method"]
        route = self.config.routes.match(method, path)
        if not isinstance(route, Route) or route.cors is None:
            return None
        return route.cors.preflight(request.headers["Origin"], method,
                                    request.headers.get("Access-Control-Request-Headers"))


def route_challenges(config: GatewayConfig, route: Route) -> errors.Challenges:
    """Bearer unless every provider of the route takes only DPoP-bound tokens; DPoP with the proof
    algorithms of every provider that accepts it (RFC 9449 §7.1: both challenges when both schemes are)."""
    providers = [p for p in config.providers if route.providers is None or p.name in route.providers]
    dpop_algs = tuple(dict.fromkeys(a for p in providers if p.dpop is not None for a in p.dpop.algorithms))
    bearer = not providers or any(p.dpop is None or p.token_binding == "optional" for p in providers)
    return errors.Challenges(bearer, dpop_algs)


def client_certificate_thumbprint(request: web.BaseRequest) -> str | None:
    """The thumbprint of the connection's client certificate: present only once TLS has verified it."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return certificate_thumbprint(der) if der else None
