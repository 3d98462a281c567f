"""Real keys, real signed tokens and a real JWKS server whose answers a test controls.

Nothing here mocks the gateway: tokens are signed with python-jose (or, for
bytes python-jose would never emit, `tests/security/forge.py`), and keys are
served over HTTP by aiohttp.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt

from tests.support.served import Served

ISSUER = "https://issuer.test/"
AUDIENCE = "https://api.example.test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """A private key that mints tokens and publishes its public JWK."""

    def __init__(self, private_key, algorithm: str, kid: str | None):
        self.private_key = private_key
        self.algorithm = algorithm
        self.kid = kid
        self.pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()

    @classmethod
    def rsa(cls, kid: str | None = "rsa-1", bits: int = 2048, algorithm: str = "RS256") -> "SigningKey":
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits), algorithm, kid)

    @classmethod
    def ec(cls, kid: str | None = "ec-1", algorithm: str = "ES256") -> "SigningKey":
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[algorithm]
        return cls(ec.generate_private_key(curve), algorithm, kid)

    @property
    def public_jwk(self) -> dict:
        public = jwk.construct(self.private_key, self.algorithm).public_key().to_dict()
        public.pop("alg", None)
        if self.kid is not None:
            public["kid"] = self.kid
        public["use"] = "sig"
        return public

    def public_pem(self) -> str:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, claims: dict, headers: dict | None = None, algorithm: str | None = None) -> str:
        extra = dict(headers or {})
        if self.kid is not None:
            extra.setdefault("kid", self.kid)
        # the key object, not its PEM: python-jose would re-parse (and re-check) the PEM on every call
        return jwt.encode(claims, self.private_key, algorithm=algorithm or self.algorithm, headers=extra)


def claims(scope: str = "", ttl: int = 3600, issuer: str = ISSUER, audience=AUDIENCE, **extra) -> dict:
    now = int(time.time())
    body = {"iss": issuer, "sub": "alice", "aud": audience, "iat": now, "exp": now + ttl}
    if scope:
        body["scope"] = scope
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def authorization(token: str) -> dict[str, str]:
    """The Authorization header that carries `token`."""
    return {"Authorization": f"Bearer {token}"}


def unsigned_token(header: dict, payload: dict | bytes, signature: bytes = b"") -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return ".".join([b64url(json.dumps(header).encode()), b64url(raw), b64url(signature)])


class ProviderServer(Served):
    """A JWKS/discovery server whose answers a test controls, counting every fetch."""

    def __init__(self, keys: list[SigningKey] | None = None, issuer: str | None = None):
        self.jwks = {"keys": [k.public_jwk for k in keys or []]}
        self.issuer = issuer
        self.fetches = 0
        self.discovery_fetches = 0
        self.status = 200
        self.delay = 0.0
        self.body: bytes | None = None  # raw override, e.g. garbage
        self.cache_control = "max-age=300"
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/jwks.json"

    def publish(self, *keys: SigningKey) -> None:
        self.jwks = {"keys": [k.public_jwk for k in keys]}

    async def _jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        body = self.body if self.body is not None else json.dumps(self.jwks).encode()
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": self.cache_control} if self.cache_control else {})

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_fetches += 1
        return web.json_response({"issuer": self.issuer or f"{self.url}/", "jwks_uri": self.jwks_uri})

    async def start(self) -> "ProviderServer":
        app = web.Application()
        app.router.add_get("/jwks.json", self._jwks)
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
