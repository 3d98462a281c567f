"""The one in-process gateway starter, its operations side, and deadlines instead of sleeps."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.lint import load_checked
from gateway.config.loader import load_config
from gateway.ops.operations import Operations, ServeOptions
from gateway.ops.server import Gateway
from tests.support.config import REPO, typed_config


def checked_config(path: Path):
    """(config, warnings) from a routes.yaml file, as `gateway serve` loads it (lint findings are warnings)."""
    return load_checked(lambda: load_config(path, dotenv=None))


@asynccontextmanager
async def running_gateway(source: str | Path, base_dir: Path = REPO, wait_keys: bool = True, jwks_clock=None):
    """An in-process Gateway on a free loopback port, from YAML text or a routes.yaml file (loaded and linted).

    `wait_keys`: return once every provider has its keys.  `jwks_clock`: the clock each key cache measures
    its unknown-kid cooldown on, in place of time.monotonic (a FakeClock lets a test pass the cooldown).
    """
    if isinstance(source, Path):
        config, _ = checked_config(source)
    else:
        config = typed_config(source, base_dir=base_dir)
    gateway = Gateway(config)
    await gateway.start()
    try:
        if wait_keys:
            for cache in gateway.caches.values():
                await cache.wait_loaded(5.0)
        if jwks_clock is not None:
            for cache in gateway.caches.values():
                cache.clock = jwks_clock
        yield gateway
    finally:
        await gateway.stop()


@asynccontextmanager
async def gateway_client(source: str | Path, client_timeout: float = 30.0, **options):
    """`async with gateway_client(text) as (gateway, client)`: running_gateway(source, **options) and an aiohttp
    session on its port that hands bodies over as sent (no decompression)."""
    async with running_gateway(source, **options) as gateway, aiohttp.ClientSession(
            f"http://127.0.0.1:{gateway.port}", timeout=aiohttp.ClientTimeout(total=client_timeout),
            auto_decompress=False) as client:
        yield gateway, client


@asynccontextmanager
async def running_operations(gateway: Gateway, path: Path, watch: bool = True):
    """The operations side (admin listener, reloader) of a running gateway whose rules come from `path`."""
    _, warnings = checked_config(path)  # serve passes the start-up warnings on, so a reload does not log them again
    operations = Operations(gateway, ServeOptions(load=lambda: checked_config(path), path=str(path), watch=watch,
                                                  warnings=tuple(warnings)))
    await operations.start()
    try:
        yield operations
    finally:
        await operations.stop()


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


def write_atomically(path: Path, text: str) -> None:
    """As editors and ConfigMaps do: a new file renamed over the old one."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    temporary.replace(path)


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
