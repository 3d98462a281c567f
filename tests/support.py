"""Shared test machinery: real keys, real signed tokens, a real JWKS server, real processes.

Nothing here mocks the gateway: tokens are signed with python-jose, keys are
served over HTTP by aiohttp, and processes are started as a user would.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt

from gateway.config.loader import build_config
from gateway.ops.server import Gateway
from gateway.config.yaml_source import load_located

REPO = Path(__file__).resolve().parent.parent
ISSUER = "https://issuer.test/"
AUDIENCE = "https://api.example.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def unsigned_token(header: dict, payload: dict | bytes, signature: bytes = b"") -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return ".".join([b64url(json.dumps(header).encode()), b64url(raw), b64url(signature)])


class ProviderServer:
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


def config_text(upstream: str, providers: str, routes: str, extra: str = "") -> str:
    return f"listen: 127.0.0.1:0\nupstream: {upstream}\n{extra}\nproviders:\n{providers}\nroutes:\n{routes}\n"


def provider_yaml(jwks_uri: str, name: str = "test", issuer: str = ISSUER, audience: str = AUDIENCE,
                  algorithms: str = "[RS256, ES256]", extra: str = "") -> str:
    lines = [f"  - name: {name}", f"    issuer: {issuer}", f"    audience: {audience}",
             f"    jwks_uri: {jwks_uri}", f"    algorithms: {algorithms}"]
    lines += [f"    {line}" for line in extra.strip("\n").splitlines() if line.strip()]
    return "\n".join(lines)


DEFAULT_ROUTES = """\
  - path: /
    methods: [GET]
    access: public
  - path: /user
    access: authenticated
  - path: /admin
    access:
      scopes: [read:admin]
"""


@asynccontextmanager
async def running_gateway(text: str, base_dir: Path = REPO, wait_keys: bool = True):
    """An in-process Gateway on a free loopback port, built from YAML text."""
    config = build_config(load_located(text, dict(os.environ)), "<test>", base_dir)
    gateway = Gateway(config)
    await gateway.start()
    try:
        if wait_keys:
            for cache in gateway.caches.values():
                await cache.wait_loaded(5.0)
        yield gateway
    finally:
        await gateway.stop()


def wait_http(url: str, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    """Poll until `url` answers with any HTTP status, or fail with a reason."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


def start_process(args: list[str], log: Path, env: dict | None = None, cwd: Path = REPO) -> subprocess.Popen:
    handle = open(log, "wb")
    return subprocess.Popen(args, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> int:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def start_flask_upstream(log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = start_process(
        [sys.executable, "-m", "gunicorn", "-c", "upstream/gunicorn.conf.py", "upstream.app:app"], log,
        env={"UPSTREAM_BIND": f"127.0.0.1:{port}", "UPSTREAM_WORKERS": "1", "UPSTREAM_THREADS": "4"})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", process=process)
    return process, url


class RedisServer:
    """`redis-server` as an operator runs it, on a free loopback port, without persistence."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:  # never a silent skip: the DPoP replay tests need the real thing
            raise RuntimeError("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = start_process([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)], self.folder / "redis.log")
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.folder / 'redis.log').read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not answer PING within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
