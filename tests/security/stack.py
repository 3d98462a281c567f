"""The system under attack: a real gateway, a real JWKS server, and an upstream that reports what reached it.

`RawEcho` is a real aiohttp server that answers with (and remembers) the
method, request target, headers in order and with duplicates, and body it
received, so a test can prove what the gateway forwarded or that nothing was
forwarded at all.  The same class doubles as a trap server for URLs a token
tries to make the gateway fetch (`jku`, `x5u`, kid-as-URL): its hit count
must stay zero.
"""
from __future__ import annotations

import base64
import functools
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from tests.security import rawhttp
from tests.security.forge import sign_raw
from tests.support import ProviderServer, SigningKey, claims, config_text, provider_yaml, running_gateway


class RawEcho:
    def __init__(self):
        self.seen: list[dict] = []
        self.runner: web.ServerRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hits(self) -> int:
        return len(self.seen)

    @property
    def last(self) -> dict:
        return self.seen[-1]

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        body = await request.read()
        record = {
            "method": request.method,
            "target": request.raw_path,
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.raw_headers],
            "body": base64.b64encode(body).decode(),
        }
        self.seen.append(record)
        return web.json_response({"echo": record})

    async def start(self) -> "RawEcho":
        self.runner = web.ServerRunner(web.Server(self._handle, access_log=None))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def echoed(answer: rawhttp.Answer) -> dict:
    """What the upstream saw, from an answer the echo upstream gave."""
    assert answer.status == 200, (answer.status, answer.body[:300])
    return answer.json()["echo"]


def header_values(record: dict, name: str) -> list[str]:
    return [v for k, v in record["headers"] if k.lower() == name.lower()]


ROUTES = """\
  - path: /
    methods: [GET]
    access: public
  - path: /public/**
    access: public
  - path: /user/**
    access: authenticated
  - path: /admin/**
    methods: [DELETE]
    access:
      scopes: [delete:admin]
  - path: /admin/**
    access:
      scopes: [read:admin]
"""
PROVIDER_EXTRA = "forward_claims: {X-User-Email: email}\nscope_claims: [scope, scp]"  # scope tests send scp lists


@dataclass
class Stack:
    gateway: object
    echo: RawEcho
    provider: ProviderServer
    rsa_key: SigningKey
    ec_key: SigningKey

    @property
    def port(self) -> int:
        return self.gateway.port

    def token(self, scope: str = "", key: SigningKey | None = None, **extra) -> str:
        """A real signed token; signed with the loaded key (jose's encode re-parses the PEM: 50+ ms a token)."""
        key = key or self.rsa_key
        header = {"alg": key.algorithm, "typ": "JWT", "kid": key.kid}
        return sign_raw(key.private_key, key.algorithm, header, claims(scope, **extra))

    async def request(self, method: str, target: str | bytes, headers: list[tuple[str, str]] | None = None,
                      body: bytes = b"", token: str | None = None, host: str | None = rawhttp.HOST) -> rawhttp.Answer:
        headers = list(headers or ())
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        return await rawhttp.send(self.port, rawhttp.build(method, target, headers, body, host=host), method)

    async def get(self, target: str | bytes, headers: list[tuple[str, str]] | None = None,
                  token: str | None = None) -> rawhttp.Answer:
        return await self.request("GET", target, headers, token=token)

    async def raw(self, data: bytes) -> rawhttp.Answer:
        return await rawhttp.send(self.port, data)


@functools.lru_cache(maxsize=None)
def public_jwk(key: SigningKey) -> dict:
    """SigningKey.public_jwk re-parses the private PEM on every call (tens of ms); once per key is enough."""
    return key.public_jwk


@asynccontextmanager
async def running_stack(rsa_key: SigningKey, ec_key: SigningKey, routes: str = ROUTES,
                        provider_extra: str = PROVIDER_EXTRA, top_extra: str = "", extra_jwks: list[dict] = ()):
    """`extra_jwks`: more JWKs published beside the two good keys (weak, misused, duplicated ones)."""
    echo = await RawEcho().start()
    provider = await ProviderServer().start()
    provider.jwks = {"keys": [public_jwk(rsa_key), public_jwk(ec_key), *extra_jwks]}
    try:
        text = config_text(echo.url, provider_yaml(provider.jwks_uri, extra=provider_extra), routes, top_extra)
        async with running_gateway(text) as gateway:
            yield Stack(gateway, echo, provider, rsa_key, ec_key)
    finally:
        await provider.stop()
        await echo.stop()


def assert_refused(answer: rawhttp.Answer, status: int, code: str | None = None) -> dict:
    """A gateway-made JSON refusal with the given status (and code)."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.is_json, answer.body[:300]
    body = answer.json()
    assert set(body) == {"code", "description"}, body
    if code is not None:
        assert body["code"] == code, body
    return body
