"""The development issuer's key, clients and token payloads, without its web server.

`gateway token` needs only this (no aiohttp import, so it starts fast); the
issuer's HTTP endpoints are in `devissuer.py`.  Its RSA key and client
secrets are generated on first use under a git-ignored folder; `clients.json`
there declares each client's secret, scopes, extra claims and audiences.
Development only: anyone who can read that folder can mint tokens.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

from gateway.auth.dpop import jwk_thumbprint

DEFAULT_ISSUER = "http://127.0.0.1:9000/"
DEFAULT_AUDIENCE = "https://api.example.test"
DEFAULT_KEY_DIR = ".devissuer"
DEFAULT_CLIENTS = {
    "dev-user-client": "read:user",
    "dev-admin-client": "read:user read:admin",
}
KEY_FILE = "signing-key.pem"
CLIENTS_FILE = "clients.json"
CLIENT_FIELDS = ("secret", "scope", "claims", "audiences")


class NoKey(Exception):
    """The key folder has no signing key, and making one was not asked for."""


class BadClients(Exception):
    """clients.json cannot be used; the message names the client and field."""


@dataclass(frozen=True)
class DevClient:
    secret: str
    scope: str | None  # space-separated; None: the token carries no scope claim
    claims: dict  # extra claims put in every token of this client
    audiences: tuple[str, ...] | None  # None: the issuer's own audience only


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
    folder: Path

    @property
    def kid(self) -> str:
        return self.public_jwk["kid"]

    @classmethod
    def load(cls, folder: str | Path = DEFAULT_KEY_DIR, create: bool = False) -> "DevKeys":
        """The folder's key; a new key (and client secrets) only where `create`, else NoKey."""
        folder = Path(folder)
        key_file = folder / KEY_FILE
        if not key_file.exists():
            if not create:
                raise NoKey(str(folder))
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_once(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        clients_file = folder / CLIENTS_FILE
        if create and not clients_file.exists():
            clients = {cid: {"secret": secrets.token_urlsafe(24), "scope": scope}
                       for cid, scope in DEFAULT_CLIENTS.items()}
            _write_once(clients_file, json.dumps(clients, indent=2).encode())
        private_pem = key_file.read_bytes()
        public = jwk.construct(private_pem, "RS256").public_key().to_dict()
        public = {"kty": "RSA", "n": public["n"], "e": public["e"]}
        public.update(kid=jwk_thumbprint(public), use="sig", alg="RS256")  # RFC 7638 thumbprint as kid
        return cls(private_pem, public, folder)

    @classmethod
    def load_or_create(cls, folder: str | Path = DEFAULT_KEY_DIR) -> "DevKeys":
        return cls.load(folder, create=True)

    def clients(self) -> dict[str, DevClient]:
        """clients.json as it is now: {client_id: {secret, scope?, claims?, audiences?}}."""
        path = self.folder / CLIENTS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise BadClients(f"{path}: not readable JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BadClients(f"{path}: must be a JSON object of client_id -> client")
        return {client_id: _client(path, client_id, spec) for client_id, spec in data.items()}

    def mint(self, claims: dict) -> str:
        return jwt.encode(claims, self.private_pem.decode(), algorithm="RS256", headers={"kid": self.kid})


def _client(path: Path, client_id: str, spec: object) -> DevClient:
    where = f"{path}: client {client_id!r}"
    if not isinstance(spec, dict):
        raise BadClients(f"{where} must be an object with {', '.join(CLIENT_FIELDS)}")
    unknown = sorted(set(spec) - set(CLIENT_FIELDS))
    if unknown:
        raise BadClients(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(CLIENT_FIELDS)})")
    secret, scope, claims, audiences = (spec.get(name) for name in CLIENT_FIELDS)
    if not isinstance(secret, str) or not secret:
        raise BadClients(f"{where} needs a non-empty string 'secret'")
    if scope is not None and not isinstance(scope, str):
        raise BadClients(f"{where}: 'scope' must be a space-separated string such as \"read:user write:orders\"")
    if claims is not None and not isinstance(claims, dict):
        raise BadClients(f"{where}: 'claims' must be an object such as {{\"https://example.com/roles\": [\"admin\"]}}")
    if audiences is not None and not (isinstance(audiences, list) and audiences
                                      and all(isinstance(a, str) and a for a in audiences)):
        raise BadClients(f"{where}: 'audiences' must be a non-empty list of strings")
    return DevClient(secret, scope, claims or {}, tuple(audiences) if audiences is not None else None)


def access_token_claims(scope: str | None, subject: str, ttl: int, issuer: str = DEFAULT_ISSUER,
                        audience: str = DEFAULT_AUDIENCE, extra: dict | None = None) -> dict:
    """A token payload; no `scope` claim at all when `scope` is None; `extra` claims win over the defaults."""
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + ttl}
    if scope is not None:
        claims["scope"] = scope
    return {**claims, **(extra or {})}
