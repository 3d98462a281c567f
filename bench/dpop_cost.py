"""CPU per request of DPoP against plain bearer (both token-cache hits), and of the Redis replay check.

Two gateway processes (replay store `memory` and `redis://`) in front of one small upstream; the
client sends batches of identical requests over keep-alive connections and reads each gateway's
CPU time (utime + stime from /proc) before and after a batch.  Batches alternate bearer / DPoP /
bearer ... so a busy shared machine weighs on both alike; the figures are medians of the rounds
and their ratios.  Proofs are made beforehand (joserfc), so the client's signing is not timed.

    .venv/bin/python -m bench.dpop_cost [--rounds 6] [--requests 1000]

It first times, in this process, the gateway's whole proof check (DpopChecker.check with the memory
store) against the one ES256 signature verification inside it: the budget is that one verification
plus little else.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.procs import free_port
from tests.security.dpop_client import DpopKey
from tests.support.keys import AUDIENCE, ISSUER, SigningKey, claims
from tests.support.processes import RedisServer, start_process, stop_process

TICKS = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 4


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def start_upstream() -> tuple[web.AppRunner, str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    runner = web.AppRunner(web.Application(handler_args={}), access_log=None)
    runner.app.router.add_get("/{tail:.*}", ok)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def gateway_config(folder: Path, upstream: str, signer: SigningKey, store: str) -> tuple[Path, int]:
    port = free_port()
    jwks = json.dumps({"keys": [signer.public_jwk]})
    text = f"""listen: 127.0.0.1:{port}
upstream: {upstream}
admin:
  listen: 127.0.0.1:{free_port()}
dpop:
  replay_store: {store}
public_url: https://api.example.com
providers:
  - name: bench
    issuer: {ISSUER}
    audience: {AUDIENCE}
    jwks: {jwks}
    algorithms: [RS256]
    dpop:
      algorithms: [ES256]
routes:
  - path: /**
    access: authenticated
"""
    path = folder / f"gateway-{port}.yaml"
    path.write_text(text)
    return path, port


async def batch(session: aiohttp.ClientSession, url: str, header_sets: list[dict]) -> None:
    queue = iter(header_sets)

    async def worker() -> None:
        for headers in queue:
            async with session.get(url, headers=headers) as answer:
                await answer.read()
                assert answer.status == 200, (answer.status, await answer.text())

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def proof_check_in_verifications(rounds: int, requests: int) -> None:
    """CPU of DpopChecker.check per request, in ES256 verifications, alternating rounds."""
    from gateway.auth.dpop import DpopChecker, ProofRequest, read_proof
    from gateway.auth.identity import Identity
    from gateway.auth.replay_store import MemoryReplayStore
    from gateway.auth.verifier import base64url_decode, signature_verifies
    from gateway.config.model import DpopPolicy, DpopSettings, JwksPolicy, ProviderConfig

    key = DpopKey("ES256")
    token = SigningKey.rsa("bench").sign(claims("read", cnf={"jkt": key.jkt}))
    provider = ProviderConfig("bench", ISSUER, frozenset({AUDIENCE}), ("RS256",), None, None, 30.0, (), None, (),
                              None, JwksPolicy(), (), 1, dpop=DpopPolicy(("ES256",)))
    identity = Identity("bench", ISSUER, None, {}, frozenset(), 0.0, (), (), key.jkt)
    checker = DpopChecker(DpopSettings(), MemoryReplayStore(10 * rounds * requests))
    url = "https://api.example.com/x"
    found, _ = read_proof([key.proof("GET", url, token)], ("ES256",), 4096)
    signing_input, _, signature = key.proof("GET", url, token).encode().rpartition(b".")
    signature = base64url_decode(signature)
    checks, verifies = [], []
    for _ in range(rounds):
        requests_ = [ProofRequest(token, "DPoP", (key.proof("GET", url, token),), "GET", lambda: url)
                     for _ in range(requests)]
        before = time.process_time()
        for request in requests_:
            await checker.check(identity, provider, request)
        checks.append((time.process_time() - before) / requests)
        before = time.process_time()
        for _ in range(requests):
            signature_verifies(found.key, signing_input, signature)
        verifies.append((time.process_time() - before) / requests)
    check, verify = statistics.median(checks) * 1e6, statistics.median(verifies) * 1e6
    print(f"proof check     {check:7.1f} us CPU, one ES256 verify {verify:.1f} us: {check / verify:.2f} verifications")


async def main(rounds: int, requests: int) -> None:
    await proof_check_in_verifications(rounds, requests)
    folder = Path(tempfile.mkdtemp(prefix="dpop-cost-"))
    signer = SigningKey.rsa("bench")
    key = DpopKey("ES256")
    token = signer.sign(claims("read", ttl=7200, cnf={"jkt": key.jkt}))
    bearer_token = signer.sign(claims("read", ttl=7200))
    runner, upstream = await start_upstream()
    redis = RedisServer(folder / "redis").start() if shutil.which("redis-server") else None
    gateways = {}
    try:
        stores = {"memory": "memory"} | ({"redis": redis.url} if redis else {})
        for name, store in stores.items():
            path, port = gateway_config(folder, upstream, signer, store)
            process = start_process([sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                                    folder / f"{name}.log", env={"GATEWAY_LOG_LEVEL": "WARNING"})
            gateways[name] = (process, f"http://127.0.0.1:{port}/x")
        figures: dict[str, list[float]] = {}
        connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            for name, (process, url) in gateways.items():  # wait until each answers, and warm its caches
                deadline = time.monotonic() + 20
                while True:
                    try:
                        await batch(session, url, [{"Authorization": f"Bearer {bearer_token}"}] * 50)
                        break
                    except (aiohttp.ClientError, AssertionError):
                        assert time.monotonic() < deadline, (folder / f"{name}.log").read_text()
                        await asyncio.sleep(0.1)
            for _ in range(rounds):
                for name, (process, url) in gateways.items():
                    proofs = [{"Authorization": f"DPoP {token}",
                               "DPoP": key.proof("GET", "https://api.example.com/x", token)} for _ in range(requests)]
                    bearer = [{"Authorization": f"Bearer {bearer_token}"}] * requests
                    for kind, headers in (("bearer", bearer), ("dpop", proofs)):
                        before = cpu_seconds(process.pid)
                        await batch(session, url, headers)
                        figures.setdefault(f"{name} {kind}", []).append(
                            (cpu_seconds(process.pid) - before) / requests * 1e6)
        median = {name: statistics.median(values) for name, values in figures.items()}
        for name, value in median.items():
            print(f"{name:15s} {value:7.1f} us CPU/request (rounds: {', '.join(f'{v:.0f}' for v in figures[name])})")
        print(f"dpop / bearer (memory store): x{median['memory dpop'] / median['memory bearer']:.2f}")
        if "redis dpop" in median:
            print(f"dpop / bearer (redis store):  x{median['redis dpop'] / median['redis bearer']:.2f}")
            extra = (median["redis dpop"] - median["redis bearer"]) - (median["memory dpop"] - median["memory bearer"])
            print(f"redis replay check: {extra:+.1f} us CPU/request in the gateway beyond the memory store")
    finally:
        for process, _ in gateways.values():
            stop_process(process)
        if redis:
            redis.stop()
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests))
