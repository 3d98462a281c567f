"""The one routes.yaml builder for tests: a gateway's YAML text from an upstream, providers, routes and extra keys."""
from __future__ import annotations

import os
from pathlib import Path

from gateway.config.loader import build_config
from gateway.config.model import GatewayConfig
from gateway.config.yaml_source import load_located
from tests.support.keys import AUDIENCE, ISSUER

REPO = Path(__file__).resolve().parent.parent.parent

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
ECHO_ROUTES = """\
  - path: /ws
    access: authenticated
    token_from: [header, query:access_token, cookie:session]
    methods: [GET]                 # a cookie token with unsafe methods would need csrf_origins
  - path: /ws-strict
    access: authenticated
  - path: /ws-refuse
    access: authenticated
  - path: /echo/**
    access: authenticated
  - path: /stream-echo
    access: authenticated
  - path: /**
    access: public
"""  # for tests/support/upstream.py's behaviours: /echo/** needs a token, the other paths are public
OPERATED = "admin: {listen: 127.0.0.1:0}\nreload: {interval: 0.05}"  # the operations side, quick to notice edits
RETRY_FAST = "jwks_cache: {retry_min: 0.1, retry_max: 0.5, timeout: 1}"  # a provider that recovers within a test


def config_text(upstream: str, providers: str | list[str], routes: str = DEFAULT_ROUTES, extra: str = "",
                listen: str = "127.0.0.1:0") -> str:
    """A whole routes.yaml; `providers` is one provider_yaml() or a list of them."""
    if not isinstance(providers, str):
        providers = "\n".join(providers)
    return f"listen: {listen}\nupstream: {upstream}\n{extra}\nproviders:\n{providers}\nroutes:\n{routes}\n"


def provider_yaml(jwks_uri: str | None, name: str = "test", issuer: str = ISSUER, audience: str = AUDIENCE,
                  algorithms: str = "[RS256, ES256]", extra: str = "") -> str:
    """One provider entry; without `jwks_uri` the keys come from `extra` (jwks:, jwks_file:) or discovery."""
    lines = [f"  - name: {name}", f"    issuer: {issuer}", f"    audience: {audience}"]
    if jwks_uri is not None:
        lines.append(f"    jwks_uri: {jwks_uri}")
    lines.append(f"    algorithms: {algorithms}")
    lines += [f"    {line}" for line in extra.strip("\n").splitlines() if line.strip()]
    return "\n".join(lines)


def typed_config(text: str, env: dict[str, str] | None = None, base_dir: Path = REPO) -> GatewayConfig:
    """The typed config the loader builds from this YAML text (in os.environ unless `env` is given)."""
    return build_config(load_located(text, dict(os.environ) if env is None else env), "<test>", base_dir)
