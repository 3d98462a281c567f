"""Fixtures for proxy tests: in-process gateways in front of the echo upstream, with a client of their own."""
from __future__ import annotations

import pytest

from tests.support.config import ECHO_ROUTES, config_text, provider_yaml
from tests.support.gateway import gateway_client


@pytest.fixture
def gateway_for(provider):
    """`async with gateway_for(upstream_url, extra=..., routes=...) as (gw, client)`: an in-process gateway."""

    def start(upstream_url: str, extra: str = "", routes: str = ECHO_ROUTES, provider_extra: str = "",
              client_timeout: float = 30.0):
        text = config_text(upstream_url, provider_yaml(provider.jwks_uri, extra=provider_extra), routes, extra)
        return gateway_client(text, client_timeout=client_timeout)

    return start
