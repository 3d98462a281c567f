"""Real `gateway serve` processes: SIGHUP reloads, and `--workers 2` sharing one port and reloading together."""
import json
import os
import signal

import aiohttp

from tests.support.config import OPERATED, RETRY_FAST, config_text, provider_yaml
from tests.support.gateway import eventually, get_text, metric, write_atomically
from tests.support.keys import authorization, claims
from tests.support.processes import free_port, serve_process, stop_process



def fixed_port_yaml(upstream: str, jwks_uri: str, port: int, operated: str = OPERATED) -> str:
    return config_text(upstream, provider_yaml(jwks_uri, extra=RETRY_FAST), extra=operated, listen=f"127.0.0.1:{port}")


async def fresh_status(url: str, token: str) -> int:
    """One request on a new connection (so SO_REUSEPORT may pick any worker)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client:
        async with client.get(url, headers=authorization(token)) as response:
            return response.status


async def test_sighup_reloads_a_running_gateway(tmp_path, provider, flask_upstream, rsa_key):
    port, admin = free_port(), free_port()
    path = tmp_path / "routes.yaml"
    path.write_text(fixed_port_yaml(flask_upstream, provider.jwks_uri, port,
                                    OPERATED.replace("reload: {interval: 0.05}", "reload: {watch: false}")))
    process = serve_process(path, tmp_path / "gateway.log", admin_port=admin)
    token = rsa_key.sign(claims("read:user"))
    url = f"http://127.0.0.1:{port}/user"
    try:
        await eventually(lambda: fresh_status(url, token), timeout=20, what="the gateway")
        assert await fresh_status(url, token) == 200
        write_atomically(path, path.read_text().replace("  - path: /user\n    access: authenticated\n",
                                                        "  - path: /user\n    access:\n      scopes: [read:admin]\n"))
        async with aiohttp.ClientSession() as client:
            _, text = await get_text(client, f"http://127.0.0.1:{admin}/metrics")
            assert metric(text, "gateway_config_reloads_total", result="accepted") == 0  # not watching
            assert await fresh_status(url, token) == 200
            os.kill(process.pid, signal.SIGHUP)
            async def forbidden():
                return await fresh_status(url, token) == 403

            await eventually(forbidden, what="the SIGHUP reload")
            _, text = await get_text(client, f"http://127.0.0.1:{admin}/metrics")
            assert metric(text, "gateway_config_reloads_total", result="accepted") == 1
    finally:
        assert stop_process(process) == 0


async def test_workers_share_the_port_and_reload_together(tmp_path, provider, flask_upstream, rsa_key):
    port, admin = free_port(), free_port()
    path = tmp_path / "routes.yaml"
    path.write_text(fixed_port_yaml(flask_upstream, provider.jwks_uri, port))
    log = tmp_path / "gateway.log"
    process = serve_process(path, log, "--workers", "2", admin_port=admin)
    token = rsa_key.sign(claims("read:user"))
    url = f"http://127.0.0.1:{port}/user"
    readyz = f"http://127.0.0.1:{admin}/readyz"
    try:
        async with aiohttp.ClientSession() as client:
            async def ready():
                return (await get_text(client, readyz))[0] == 200

            await eventually(ready, timeout=20, what="both workers ready")
            statuses = [await fresh_status(url, token) for _ in range(40)]
            assert set(statuses) == {200}
            pids = {line["pid"] for line in map(json.loads, log.read_text().splitlines())
                    if line["logger"] == "gateway.access"}
            assert len(pids) == 2 and process.pid not in pids  # both workers served, the supervisor did not
            _, text = await get_text(client, f"http://127.0.0.1:{admin}/metrics")
            assert metric(text, "gateway_requests_total", route="/user", status="200") == 40  # summed over workers

            write_atomically(path, path.read_text().replace(
                "  - path: /user\n    access: authenticated\n", "  - path: /user\n    access:\n      scopes: [read:admin]\n"))

            async def both_reloaded():
                _, text = await get_text(client, f"http://127.0.0.1:{admin}/metrics")
                return metric(text, "gateway_config_reloads_total", result="accepted") == 2

            await eventually(both_reloaded, what="a reload in each worker")
            assert {await fresh_status(url, token) for _ in range(20)} == {403}
            await eventually(ready, what="both workers reporting the same version")

            os.kill(next(iter(pids)), signal.SIGKILL)  # a crashed worker is replaced

            def listening() -> set[int]:
                return {line["pid"] for line in map(json.loads, log.read_text().splitlines())
                        if line.get("message", "").startswith("gateway listening")}

            await eventually(lambda: len(listening()) == 3, timeout=20, what="a replacement worker")
            await eventually(ready, what="readiness with the replacement")
            assert {await fresh_status(url, token) for _ in range(10)} == {403}  # it started on the new rules
    finally:
        assert stop_process(process) == 0
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} outlived its supervisor")
