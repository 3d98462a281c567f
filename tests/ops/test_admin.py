"""The admin listener: health, metrics and readiness, on an in-process gateway and a real process."""
import re

import aiohttp

from tests.support.config import OPERATED, RETRY_FAST, config_text, provider_yaml
from tests.support.gateway import eventually, get_text, metric, running_gateway, running_operations
from tests.support.keys import ProviderServer, authorization, claims
from tests.support.processes import free_port, serve_process, stop_process



async def test_metrics_are_present_and_move_with_traffic(tmp_path, provider, flask_upstream, rsa_key):
    path = tmp_path / "routes.yaml"
    path.write_text(config_text(flask_upstream, provider_yaml(provider.jwks_uri, extra=RETRY_FAST), extra=OPERATED))
    async with running_gateway(path) as gateway, running_operations(gateway, path) as operations, \
            aiohttp.ClientSession() as client:
        admin = f"http://127.0.0.1:{operations.admin.port}"
        public = f"http://127.0.0.1:{gateway.port}"
        assert operations.admin.port != gateway.port
        async with client.get(f"{admin}/healthz") as response:
            assert response.status == 200 and await response.json() == {"status": "alive"}
        async with client.get(f"{public}/healthz") as response:
            assert response.status == 404  # admin paths are not on the public port
        async with client.get(f"{public}/metrics") as response:
            assert response.status == 404
        await eventually(lambda: gateway.caches["test"].loaded, what="keys")
        status, before = await get_text(client, f"{admin}/metrics")
        assert status == 200
        for name in ("gateway_requests", "gateway_upstream_duration_seconds", "gateway_token_verifications",
                     "gateway_jwks_fetches", "gateway_jwks_fetch_failures", "gateway_jwks_keys",
                     "gateway_jwks_age_seconds", "gateway_config_reloads", "gateway_token_cache_lookups"):
            assert re.search(rf"^# TYPE {name}(_total)? (counter|gauge|histogram)$", before, re.M), name

        token = rsa_key.sign(claims("read:user"))
        for _ in range(3):
            async with client.get(f"{public}/user", headers=authorization(token)) as response:
                assert response.status == 200
        async with client.get(f"{public}/admin", headers=authorization(token)) as response:
            assert response.status == 403
        async with client.get(f"{public}/user", headers=authorization(rsa_key.sign(claims(ttl=-600)))) as response:
            assert response.status == 401
        async with client.get(f"{public}/nowhere") as response:
            assert response.status == 404
        _, after = await get_text(client, f"{admin}/metrics")

        def moved(name, **labels):
            return metric(after, name, **labels) - metric(before, name, **labels)

        assert moved("gateway_requests_total", route="/user", method="GET", decision="allow", status="200") == 3
        assert moved("gateway_requests_total", route="/admin", method="GET", decision="deny", status="403") == 1
        assert moved("gateway_requests_total", route="-", method="GET", decision="deny", status="404") == 1
        assert moved("gateway_upstream_duration_seconds_count", route="/user") == 3
        assert moved("gateway_token_verifications_total", outcome="valid") == 4
        assert moved("gateway_token_verifications_total", outcome="token_expired") == 1
        assert moved("gateway_token_cache_lookups_total", result="hit") == 3  # one token, verified once
        assert metric(after, "gateway_jwks_fetches_total", provider="test") >= 1
        assert metric(after, "gateway_jwks_keys", provider="test") == 2
        assert 0 <= metric(after, "gateway_jwks_age_seconds", provider="test") < 60
        assert "process_start_time_seconds" in after


async def test_readiness_flips_once_the_identity_provider_answers(tmp_path, rsa_key, ec_key, flask_upstream):
    """A real `gateway serve` started while its IdP is down: /readyz says why, then turns ready."""
    idp = ProviderServer([rsa_key, ec_key])
    idp.port = free_port()
    path = tmp_path / "routes.yaml"
    path.write_text(config_text(flask_upstream, provider_yaml(idp.jwks_uri, extra=RETRY_FAST), extra=OPERATED,
                                listen=f"127.0.0.1:{free_port()}"))
    admin_port = free_port()
    process = serve_process(path, tmp_path / "gateway.log", admin_port=admin_port)
    try:
        async with aiohttp.ClientSession() as client:
            readyz = f"http://127.0.0.1:{admin_port}/readyz"

            async def not_ready():
                async with client.get(readyz) as response:
                    return response.status == 503 and await response.json()

            body = await eventually(not_ready, timeout=20, what="the admin listener")
            assert body["status"] == "not ready"
            assert any("provider 'test' has no signing keys yet" in r and "cannot reach" in r for r in body["reasons"])
            await idp.start()

            async def ready():
                async with client.get(readyz) as response:
                    return response.status == 200 and await response.json()

            assert await eventually(ready, timeout=10, what="readiness") == {"status": "ready"}
    finally:
        stop_process(process)
        await idp.stop()
