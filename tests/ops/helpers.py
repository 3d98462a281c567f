"""Machinery for the operations tests: gateways built from a real routes.yaml file, deadlines instead of sleeps."""
from __future__ import annotations

import asyncio
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.loader import load_config
from gateway.config.lint import load_checked
from gateway.ops.operations import Operations, ServeOptions
from gateway.ops.server import Gateway
from tests.support import AUDIENCE, DEFAULT_ROUTES, ISSUER, REPO, free_port, start_process, stop_process

ROUTES = DEFAULT_ROUTES


def routes_yaml(upstream: str, providers: list[tuple[str, str, str]], routes: str = ROUTES,
                admin: str = "127.0.0.1:0", extra: str = "") -> str:
    """A routes.yaml; `providers` are (name, issuer, jwks_uri) with short retry backoff for tests."""
    lines = ["listen: 127.0.0.1:0", f"upstream: {upstream}", f"admin: {{listen: {admin}}}",
             "reload: {interval: 0.05}", extra, "providers:"]
    for name, issuer, jwks_uri in providers:
        lines += [f"  - name: {name}", f"    issuer: {issuer}", f"    audience: {AUDIENCE}",
                  f"    jwks_uri: {jwks_uri}", "    algorithms: [RS256, ES256]",
                  "    jwks_cache: {retry_min: 0.1, retry_max: 0.5, timeout: 1}"]
    return "\n".join(lines) + "\nroutes:\n" + routes


def default_provider(jwks_uri: str) -> list[tuple[str, str, str]]:
    return [("test", ISSUER, jwks_uri)]


def write_atomically(path: Path, text: str) -> None:
    """As editors and ConfigMaps do: a new file renamed over the old one."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    temporary.replace(path)


@asynccontextmanager
async def operated_gateway(path: Path, watch: bool = True):
    """A Gateway plus its operations (admin listener, reloader), in this process."""
    load = lambda: load_checked(lambda: load_config(path, dotenv=None))  # noqa: E731
    config, warnings = load()
    gateway = Gateway(config)
    operations = Operations(gateway, ServeOptions(load=load, path=str(path), watch=watch, warnings=tuple(warnings)))
    await gateway.start()
    await operations.start()
    try:
        yield gateway, operations
    finally:
        await operations.stop()
        await gateway.stop()


async def eventually(check, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll an (async or plain) check until it returns a truthy value, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except (aiohttp.ClientError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s (last error: {last!r})")
        await asyncio.sleep(interval)


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def get_text(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


def serve_process(config: Path, log: Path, *extra: str, admin_port: int | None = None, env: dict | None = None):
    """`python -m gateway serve` as a user runs it, JSON logs to `log`."""
    admin = ["--admin", f"127.0.0.1:{admin_port}"] if admin_port else []
    return start_process([sys.executable, "-m", "gateway", "serve", "--config", str(config),
                          "--log-format", "json", *admin, *extra], log, env=env, cwd=REPO)


__all__ = ["free_port", "stop_process", "REPO"]
