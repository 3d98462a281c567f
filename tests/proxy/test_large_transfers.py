"""1 GiB each way through a gateway process: identical SHA-256 at the far end, and the gateway's memory stays flat.

Marked `large` (about 3 s each on 2 cores): CI runs them with the rest of
`make test`; deselect locally with `-m "not large"`.  Memory is read from the
gateway process's /proc status: VmHWM is the peak resident set since start,
compared with VmRSS after a warm-up request.  The measured figures are
written to the test report (`-rA` or the junit properties) and docs/proxy.md.
"""
from __future__ import annotations

import hashlib

import aiohttp
import pytest

from tests.support.upstream import pattern

pytestmark = pytest.mark.large

GIB = 1 << 30
# Peak resident growth allowed while 1 GiB streams through; measured about 4 MiB.  Buffering even
# a tenth of the body would exceed it a hundred times over.
GROWTH_BOUND_MIB = 16


async def _warm(client: aiohttp.ClientSession, gw, bearer) -> dict[str, int]:
    """One authenticated request so imports, key parsing and the pool exist before measuring."""
    async with client.put(gw.url + "/echo/warm", data=b"w" * 65536, headers=bearer()) as r:
        assert r.status == 200
    return gw.memory_kib()


def _report(record_property, name: str, before: dict[str, int], after: dict[str, int]) -> float:
    growth = (after["VmHWM"] - before["VmRSS"]) / 1024
    record_property(f"{name}_rss_before_mib", round(before["VmRSS"] / 1024, 1))
    record_property(f"{name}_peak_rss_mib", round(after["VmHWM"] / 1024, 1))
    record_property(f"{name}_peak_growth_mib", round(growth, 1))
    print(f"\n{name}: RSS before {before['VmRSS'] / 1024:.1f} MiB, peak {after['VmHWM'] / 1024:.1f} MiB "
          f"(+{growth:.1f} MiB)")
    return growth


async def test_one_gib_upload_with_bounded_gateway_memory(gateway_process, echo_upstream, bearer, record_property):
    gw = await gateway_process(echo_upstream.url)
    sent = hashlib.sha256()

    async def body():
        for block in pattern(GIB, 7):
            sent.update(block)
            yield block

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        before = await _warm(client, gw, bearer)
        # Content-Length declared: exactly the default max_body_bytes (1 GiB), which is inclusive
        headers = {**bearer(), "Content-Length": str(GIB)}
        async with client.put(gw.url + "/echo/gib", data=body(), headers=headers) as r:
            assert r.status == 200
            received = await r.json()
    assert (received["length"], received["sha256"]) == (GIB, sent.hexdigest())
    assert _report(record_property, "upload", before, gw.memory_kib()) < GROWTH_BOUND_MIB


async def test_one_gib_download_with_bounded_gateway_memory(gateway_process, echo_upstream, bearer, record_property):
    gw = await gateway_process(echo_upstream.url)
    got = hashlib.sha256()
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        before = await _warm(client, gw, bearer)
        async with client.get(gw.url + f"/download?size={GIB}&framing=chunked&seed=8&id=gib") as r:
            assert r.status == 200 and r.headers["Transfer-Encoding"] == "chunked"
            length = 0
            async for chunk in r.content.iter_any():
                got.update(chunk)
                length += len(chunk)
    assert (length, got.hexdigest()) == (GIB, echo_upstream.controls.download_sha256["gib"])
    assert _report(record_property, "download", before, gw.memory_kib()) < GROWTH_BOUND_MIB
