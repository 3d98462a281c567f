"""Fixtures for proxy tests: the purpose-built upstream, in-process gateways in front of it, and gateway processes."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.proxy.upstream import Upstream
from tests.support import (
    AUDIENCE, ISSUER, claims, config_text, free_port, provider_yaml, running_gateway, start_process, stop_process,
)

ROUTES = """\
  - path: /ws
    access: authenticated
    token_from: [header, query:access_token, cookie:session]
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
"""


@pytest.fixture
async def upstream():
    server = await Upstream().start_tcp()
    yield server
    await server.stop()


@pytest.fixture
def token(rsa_key):
    """A freshly signed RS256 token; keyword arguments go to claims()."""
    return lambda **kw: rsa_key.sign(claims(**kw))


@pytest.fixture
def bearer(token):
    return lambda **kw: {"Authorization": f"Bearer {token(**kw)}"}


@pytest.fixture
def gateway_for(provider):
    """`async with gateway_for(upstream_url, extra=..., routes=...) as (gw, client)`: an in-process gateway."""

    @asynccontextmanager
    async def start(upstream_url: str, extra: str = "", routes: str = ROUTES, provider_extra: str = "",
                    client_timeout: float = 30.0):
        text = config_text(upstream_url, provider_yaml(provider.jwks_uri, extra=provider_extra), routes, extra)
        async with running_gateway(text) as gw:
            timeout = aiohttp.ClientTimeout(total=client_timeout)
            async with aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}", timeout=timeout,
                                             auto_decompress=False) as client:
                yield gw, client

    return start


class GatewayProcess:
    """`python -m gateway serve --config FILE`, as an operator runs it; keys are inlined (no JWKS fetch)."""

    def __init__(self, folder: Path, upstream_url: str, rsa_key, extra: str = "", routes: str = ROUTES,
                 provider_extra: str = ""):
        folder.mkdir()
        self.port = free_port()
        jwks = json.dumps({"keys": [rsa_key.public_jwk]})
        providers = "\n".join(["  - name: test", f"    issuer: {ISSUER}", f"    audience: {AUDIENCE}",
                               f"    jwks: {jwks}", "    algorithms: [RS256]"]
                              + [f"    {line}" for line in provider_extra.splitlines()])
        extra = f"admin:\n  listen: 127.0.0.1:{free_port()}\n{extra}"
        text = config_text(upstream_url, providers, routes, extra)
        self.config = folder / "routes.yaml"
        self.config.write_text(text.replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{self.port}", 1))
        self.log = folder / "gateway.log"
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "GatewayProcess":
        self.process = start_process([sys.executable, "-m", "gateway", "serve", "--config", str(self.config)],
                                     self.log, env={"PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log.read_text()}")
                try:
                    async with session.get(self.url + "/_probe") as response:
                        await response.read()
                        return self
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "the gateway process did not start listening within 20 s"
                await asyncio.sleep(0.05)

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak resident set since start) of the gateway process, in KiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
                if line.startswith(("VmRSS", "VmHWM"))}

    def stop(self) -> int:
        return stop_process(self.process) if self.process is not None else 0


@pytest.fixture
def gateway_process(tmp_path, rsa_key):
    """`await gateway_process(upstream_url, extra=...)`: a started gateway process, killed at teardown."""
    started: list[GatewayProcess] = []

    async def start(upstream_url: str, extra: str = "", routes: str = ROUTES,
                    provider_extra: str = "") -> GatewayProcess:
        process = GatewayProcess(tmp_path / f"gateway{len(started)}", upstream_url, rsa_key, extra, routes,
                                 provider_extra)
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        process.stop()
