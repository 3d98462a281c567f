"""A local development issuer shaped like Auth0, so `make run` needs no account.

It serves OIDC discovery, a JWKS, and a client-credentials token endpoint over
the keys and clients of `dev_keys`; `clients.json` is re-read on every token
request, so an edit needs no restart.  Like Auth0's, the endpoint binds the
token to the client's key when the request carries a DPoP proof (RFC 9449 §5:
`cnf.jkt`, `token_type: DPoP`).  It is for development only: anyone who
can read its folder can mint tokens.
"""
from __future__ import annotations

import secrets
import time

from aiohttp import web

from gateway import errors
from gateway.auth.dpop import check_proof_claims, read_proof, replay_key
from gateway.auth.replay_store import MemoryReplayStore
from gateway.tools.dev_keys import (
    CLIENTS_FILE, DEFAULT_AUDIENCE, DEFAULT_ISSUER, BadClients, DevKeys, access_token_claims,
)


DPOP_ALGORITHMS = ("ES256", "RS256")
DPOP_MAX_AGE = 60.0


def issuer_app(keys: DevKeys, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE,
               ttl: int = 3600) -> web.Application:
    base = issuer.rstrip("/")

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": issuer,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "token_endpoint": f"{base}/oauth/token",
            "grant_types_supported": ["client_credentials"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [keys.public_jwk]}, headers={"Cache-Control": "public, max-age=300"})

    async def token(request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            try:
                form = await request.json()
            except ValueError:
                form = None
        else:
            form = dict(await request.post())
        if not isinstance(form, dict):
            return web.json_response({"error": "invalid_request", "error_description": "send a JSON or form body"},
                                     status=400)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type",
                                      "error_description": "only client_credentials is supported"}, status=400)
        try:
            clients = keys.clients()
        except BadClients as exc:
            return web.json_response({"error": "server_error", "error_description": str(exc)}, status=500)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        client = clients.get(client_id) if isinstance(client_id, str) else None
        if client is None or not isinstance(secret, str) \
                or not secrets.compare_digest(secret.encode(), client.secret.encode()):
            return web.json_response({"error": "access_denied", "error_description": "Unauthorized"}, status=401)
        wanted = form.get("audience", audience)
        if wanted not in (client.audiences or (audience,)):
            return web.json_response({"error": "access_denied",
                                      "error_description": f"Service not found: {wanted} (client {client_id!r} "
                                      f"may ask for {', '.join(client.audiences or (audience,))}; "
                                      f"add it to 'audiences' in {keys.folder / CLIENTS_FILE})"}, status=403)
        binding = {}
        if "DPoP" in request.headers:
            try:
                binding = {"cnf": {"jkt": await dpop_key(request)}}
            except errors.Rejection as rejection:
                return web.json_response({"error": "invalid_dpop_proof", "error_description": rejection.description},
                                         status=400)
        claims = access_token_claims(client.scope, f"{client_id}@clients", ttl, issuer, wanted,
                                     {"azp": client_id, "gty": "client-credentials", **client.claims, **binding})
        body = {"access_token": keys.mint(claims), "token_type": "DPoP" if binding else "Bearer", "expires_in": ttl}
        if client.scope is not None:
            body["scope"] = client.scope
        return web.json_response(body)

    used_proofs = MemoryReplayStore(100_000)

    async def dpop_key(request: web.Request) -> str:
        """The thumbprint of the key whose proof came with this token request (checked as §4.3 says)."""
        found, proof_claims = read_proof(request.headers.getall("DPoP"), DPOP_ALGORITHMS, 4096)
        check_proof_claims(proof_claims, "POST", str(request.url), None, DPOP_MAX_AGE, 5.0, time.time())
        if not await used_proofs.first_use(replay_key(found.jkt, proof_claims["jti"]), DPOP_MAX_AGE + 5.0):
            raise errors.invalid_dpop_proof("this DPoP proof was already used; make a new one")
        return found.jkt

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_post("/oauth/token", token)
    return app
