"""The system under attack: a real gateway, a real JWKS server, and the echo upstream that reports what reached it.

The echo upstream (tests/support/upstream.py) answers with (and remembers)
the method, request target, headers in order and with duplicates, and body
it received, so a test can prove what the gateway forwarded or that nothing
was forwarded at all.
"""
from __future__ import annotations

import functools
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tests.security.forge import sign_raw
from tests.support import rawhttp
from tests.support.config import config_text, provider_yaml
from tests.support.gateway import running_gateway
from tests.support.keys import ProviderServer, SigningKey, claims
from tests.support.upstream import EchoUpstream


def echoed(answer: rawhttp.Answer) -> dict:
    """What the upstream saw, from an answer the echo upstream gave."""
    assert answer.status == 200, (answer.status, answer.body[:300])
    return answer.json()


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
    echo: EchoUpstream
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
    async with EchoUpstream() as echo, ProviderServer() as provider:
        provider.jwks = {"keys": [public_jwk(rsa_key), public_jwk(ec_key), *extra_jwks]}
        text = config_text(echo.url, provider_yaml(provider.jwks_uri, extra=provider_extra), routes, top_extra)
        async with running_gateway(text) as gateway:
            yield Stack(gateway, echo, provider, rsa_key, ec_key)


def assert_refused(answer: rawhttp.Answer, status: int, code: str | None = None) -> dict:
    """A gateway-made JSON refusal with the given status (and code)."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.is_json, answer.body[:300]
    body = answer.json()
    assert set(body) == {"code", "description"}, body
    if code is not None:
        assert body["code"] == code, body
    return body
