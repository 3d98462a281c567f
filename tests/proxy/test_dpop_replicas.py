"""The DPoP replay store shared through a real Redis: a proof used at one gateway process is refused at another,
and a Redis that cannot be reached refuses proofs (503) instead of waving them through."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import aiohttp

from tests.security.dpop_client import DpopKey
from tests.support.config import ECHO_ROUTES, OPERATED, REPO, config_text, provider_yaml
from tests.support.gateway import eventually, get_text, metric, write_atomically
from tests.support.keys import AUDIENCE, ISSUER, SigningKey, claims
from tests.support.processes import free_port, serve_process, stop_process

PUBLIC = "https://api.example.com"  # both replicas serve one public name, so one proof fits either
PROVIDER_DPOP = "dpop:\n  algorithms: [ES256]\n  max_age: 60"


def _store(url: str) -> str:
    return f"dpop:\n  replay_store: {url}\npublic_url: {PUBLIC}"


async def _send(session: aiohttp.ClientSession, base: str, token: str, proof: str):
    async with session.get(base + "/echo/x", headers={"Authorization": f"DPoP {token}", "DPoP": proof}) as answer:
        return answer.status, await answer.json(), answer.headers.copy()


async def test_a_proof_used_at_one_replica_is_refused_at_the_other(gateway_process, echo_upstream, redis_server, rsa_key):
    one = await gateway_process(echo_upstream.url, extra=_store(redis_server.url), provider_extra=PROVIDER_DPOP)
    two = await gateway_process(echo_upstream.url, extra=_store(redis_server.url), provider_extra=PROVIDER_DPOP)
    key = DpopKey("ES256")
    token = rsa_key.sign(claims(cnf={"jkt": key.jkt}))
    proof = key.proof("GET", PUBLIC + "/echo/x", token)
    async with aiohttp.ClientSession() as session:
        status, body, _ = await _send(session, one.url, token, proof)
        assert status == 200, body
        status, body, headers = await _send(session, two.url, token, proof)
        assert (status, body["code"]) == (401, "invalid_dpop_proof"), body
        assert "already used" in body["description"]
        assert headers.getall("WWW-Authenticate")[1].startswith('DPoP realm="api", error="invalid_dpop_proof"')
        fresh = key.proof("GET", PUBLIC + "/echo/x", token)
        assert (await _send(session, two.url, token, fresh))[0] == 200
        assert (await _send(session, one.url, token, fresh))[0] == 401

        redis_server.stop()  # Redis goes away: proofs are refused, never waved through
        status, body, headers = await _send(session, one.url, token, key.proof("GET", PUBLIC + "/echo/x", token))
        assert (status, body["code"]) == (503, "replay_store_unavailable"), body
        assert headers.get("Retry-After") == "1"
    assert len([seen for seen in echo_upstream.seen if seen.target == "/echo/x"]) == 2
    deadline = time.monotonic() + 10  # the process writes its log lines a loop turn later
    while "DPoP replay store redis://127.0.0.1" not in (log := one.log.read_text()):
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.05)
    assert token not in log and proof not in log


async def test_an_unreachable_redis_refuses_with_503_and_the_gateway_keeps_serving(gateway_for, echo_upstream, token):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with gateway_for(echo_upstream.url, extra=_store(dead), provider_extra=PROVIDER_DPOP) as (gw, client):
        key = DpopKey("ES256")
        bound = token(cnf={"jkt": key.jkt})
        for _ in range(2):
            headers = {"Authorization": f"DPoP {bound}", "DPoP": key.proof("GET", PUBLIC + "/echo/x", bound)}
            async with client.get("/echo/x", headers=headers) as answer:
                assert answer.status == 503
                assert (await answer.json())["code"] == "replay_store_unavailable"
        async with client.get("/echo/x", headers={"Authorization": f"Bearer {token()}"}) as answer:
            assert answer.status == 200  # bearer tokens do not need the store
    assert [seen.header("Authorization") for seen in echo_upstream.seen] == [None]


async def test_a_redis_that_accepts_but_never_answers_is_503_within_its_timeout(gateway_for, echo_upstream, token):
    async def silent(reader, writer):  # takes the command and says nothing
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with gateway_for(echo_upstream.url, extra=_store(f"redis://127.0.0.1:{port}/0"),
                               provider_extra=PROVIDER_DPOP) as (gw, client):
            key = DpopKey("ES256")
            bound = token(cnf={"jkt": key.jkt})
            headers = {"Authorization": f"DPoP {bound}", "DPoP": key.proof("GET", PUBLIC + "/echo/x", bound)}
            started = time.monotonic()
            async with client.get("/echo/x", headers=headers) as answer:
                assert answer.status == 503
                assert (await answer.json())["code"] == "replay_store_unavailable"
            assert time.monotonic() - started < 5  # REDIS_TIMEOUT is 1 s
    finally:
        server.close()
    assert echo_upstream.seen == []


def test_workers_with_dpop_refuse_to_start_on_a_memory_store(tmp_path):
    """Each worker process would keep its own set of used proofs: a proof could be replayed once per worker."""
    jwks = json.dumps({"keys": [SigningKey.ec("w").public_jwk]})
    config = tmp_path / "routes.yaml"
    config.write_text(f"listen: 127.0.0.1:{free_port()}\nupstream: http://127.0.0.1:1\nproviders:\n"
                      f"  - name: test\n    issuer: {ISSUER}\n    audience: {AUDIENCE}\n    jwks: {jwks}\n"
                      "    algorithms: [ES256]\n    dpop: true\nroutes:\n  - path: /**\n    access: authenticated\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "2",
                             "--log-format", "text"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "needs a shared replay store" in result.stderr + result.stdout


async def test_concurrent_proofs_share_round_trips_and_a_duplicate_among_them_is_caught(
        gateway_for, echo_upstream, token, redis_server):
    async with gateway_for(echo_upstream.url, extra=_store(redis_server.url), provider_extra=PROVIDER_DPOP) as (gw, client):
        key = DpopKey("ES256")
        bound = token(cnf={"jkt": key.jkt})
        twice = key.proof("GET", PUBLIC + "/echo/x", bound)
        proofs = [key.proof("GET", PUBLIC + "/echo/x", bound) for _ in range(12)] + [twice, twice]

        async def send(proof: str) -> int:
            async with client.get("/echo/x", headers={"Authorization": f"DPoP {bound}", "DPoP": proof}) as answer:
                await answer.read()
                return answer.status

        statuses = await asyncio.gather(*(send(proof) for proof in proofs))
    assert statuses[:12] == [200] * 12
    assert sorted(statuses[12:]) == [200, 401]


async def test_workers_refuse_a_reload_that_turns_dpop_on_with_a_memory_store(tmp_path, echo_upstream, rsa_key):
    """The start-up check above, also at a reload: each worker's own memory store would take the same proof once."""
    port, admin = free_port(), free_port()
    jwks = json.dumps({"keys": [rsa_key.public_jwk]})
    provider = provider_yaml(None, algorithms="[RS256]", extra=f"jwks: {jwks}")
    path = tmp_path / "routes.yaml"
    path.write_text(config_text(echo_upstream.url, provider, ECHO_ROUTES, f"{OPERATED}\npublic_url: {PUBLIC}",
                                listen=f"127.0.0.1:{port}"))
    process = serve_process(path, tmp_path / "gateway.log", "--workers", "2", admin_port=admin)
    try:
        async with aiohttp.ClientSession() as client:
            async def ready() -> bool:
                return (await get_text(client, f"http://127.0.0.1:{admin}/readyz"))[0] == 200

            await eventually(ready, timeout=20, what="both workers ready")
            write_atomically(path, path.read_text().replace(f"jwks: {jwks}", f"jwks: {jwks}\n    dpop: true"))

            async def both_attempted() -> bool:
                _, text = await get_text(client, f"http://127.0.0.1:{admin}/metrics")
                return metric(text, "gateway_config_reloads_total") == 2

            await eventually(both_attempted, what="a reload attempt in each worker")
            key = DpopKey("ES256")
            token = rsa_key.sign(claims(cnf={"jkt": key.jkt}))
            proof = key.proof("GET", PUBLIC + "/echo/x", token)
            statuses = []
            for _ in range(20):  # fresh connections: SO_REUSEPORT spreads them over both workers
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
                    statuses.append((await _send(fresh, f"http://127.0.0.1:{port}", token, proof))[0])
            _, text = await get_text(client, f"http://127.0.0.1:{admin}/metrics")
    finally:
        assert stop_process(process) == 0
    assert statuses.count(200) <= 1, statuses  # one proof, one request: never once per worker
    assert metric(text, "gateway_config_reloads_total", result="refused") == 2
    assert "needs a shared replay store" in (tmp_path / "gateway.log").read_text()

