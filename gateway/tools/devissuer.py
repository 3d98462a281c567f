"""A local development issuer shaped like Auth0, so `make run` needs no account.

It serves OIDC discovery, a JWKS, and a client-credentials token endpoint
that, like Auth0's, binds the token to the client's key when the request
carries a DPoP proof (RFC 9449 §5: `cnf.jkt`, `token_type: DPoP`).
Its RSA key and client secrets are generated on first use under a git-ignored
folder.  It is for development only: anyone who can read that folder can mint
tokens.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

from gateway import errors
from gateway.auth.dpop import check_proof_claims, jwk_thumbprint, read_proof, replay_key
from gateway.auth.replay_store import MemoryReplayStore

DEFAULT_ISSUER = "http://127.0.0.1:9000/"
DEFAULT_AUDIENCE = "https://api.example.test"
DEFAULT_KEY_DIR = ".devissuer"
DPOP_ALGORITHMS = ("ES256", "RS256")
DPOP_MAX_AGE = 60.0
DEFAULT_CLIENTS = {
    "dev-user-client": "read:user",
    "dev-admin-client": "read:user read:admin",
}


def _write_once(path: Path, data: bytes) -> None:
    """Create `path` atomically unless it exists (two processes may start at once)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()


@dataclass(frozen=True)
class DevKeys:
    private_pem: bytes
    public_jwk: dict
    clients: dict  # client_id -> {"secret": ..., "scope": ...}

    @property
    def kid(self) -> str:
        return self.public_jwk["kid"]

    @classmethod
    def load_or_create(cls, folder: str | Path = DEFAULT_KEY_DIR) -> "DevKeys":
        folder = Path(folder)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_file = folder / "signing-key.pem"
        if not key_file.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_once(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        clients_file = folder / "clients.json"
        if not clients_file.exists():
            clients = {cid: {"secret": secrets.token_urlsafe(24), "scope": scope}
                       for cid, scope in DEFAULT_CLIENTS.items()}
            _write_once(clients_file, json.dumps(clients, indent=2).encode())
        private_pem = key_file.read_bytes()
        public = jwk.construct(private_pem, "RS256").public_key().to_dict()
        public = {"kty": "RSA", "n": public["n"], "e": public["e"]}
        public.update(kid=jwk_thumbprint(public), use="sig", alg="RS256")  # RFC 7638 thumbprint as kid
        return cls(private_pem, public, json.loads(clients_file.read_text()))

    def mint(self, claims: dict) -> str:
        return jwt.encode(claims, self.private_pem.decode(), algorithm="RS256", headers={"kid": self.kid})


def access_token_claims(scope: str, subject: str, ttl: int, issuer: str = DEFAULT_ISSUER,
                        audience: str = DEFAULT_AUDIENCE, **extra) -> dict:
    now = int(time.time())
    return {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + ttl,
            "scope": scope, **extra}


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
        client_id, secret = form.get("client_id"), form.get("client_secret")
        client = keys.clients.get(client_id) if isinstance(client_id, str) else None
        if client is None or not isinstance(secret, str) \
                or not secrets.compare_digest(secret.encode(), client["secret"].encode()):
            return web.json_response({"error": "access_denied", "error_description": "Unauthorized"}, status=401)
        if form.get("audience") != audience:
            return web.json_response({"error": "access_denied",
                                      "error_description": f"Service not found: {form.get('audience')}"}, status=403)
        binding = {}
        if "DPoP" in request.headers:
            try:
                binding = {"cnf": {"jkt": await dpop_key(request)}}
            except errors.Rejection as rejection:
                return web.json_response({"error": "invalid_dpop_proof", "error_description": rejection.description},
                                         status=400)
        claims = access_token_claims(client["scope"], f"{form['client_id']}@clients", ttl, issuer, audience,
                                     azp=form["client_id"], gty="client-credentials", **binding)
        return web.json_response({"access_token": keys.mint(claims), "token_type": "DPoP" if binding else "Bearer",
                                  "expires_in": ttl, "scope": client["scope"]})

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
