"""Admin listener, metrics, readiness and the access log, on in-process gateways and real processes."""
import asyncio
import json
import logging
import re

import aiohttp

from gateway.observe import access_log
from tests.support.config import OPERATED, RETRY_FAST, config_text, provider_yaml
from tests.support.gateway import eventually, get_text, metric, running_gateway, running_operations
from tests.support.keys import ProviderServer, claims
from tests.support.processes import free_port, serve_process, stop_process


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


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
            async with client.get(f"{public}/user", headers=bearer(token)) as response:
                assert response.status == 200
        async with client.get(f"{public}/admin", headers=bearer(token)) as response:
            assert response.status == 403
        async with client.get(f"{public}/user", headers=bearer(rsa_key.sign(claims(ttl=-600)))) as response:
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


async def test_access_log_is_json_with_request_ids_and_never_the_token(tmp_path, provider, rsa_key, echo_upstream):
    path = tmp_path / "routes.yaml"
    routes = "  - path: /user\n    access: authenticated\n  - path: /admin\n    access:\n      scopes: [read:admin]\n"
    port = free_port()
    path.write_text(config_text(echo_upstream.url, provider_yaml(provider.jwks_uri, extra=RETRY_FAST), routes,
                                OPERATED, listen=f"127.0.0.1:{port}"))
    log = tmp_path / "gateway.log"
    process = serve_process(path, log, admin_port=free_port())
    token = rsa_key.sign(claims("read:user", sub="alice"))
    upstream_id = lambda: echo_upstream.last.header("X-Request-Id")  # noqa: E731
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            async def served():
                async with client.get("/user", headers={**bearer(token), "X-Request-Id": "trace-123"}) as response:
                    return response.status == 200

            await eventually(served, timeout=20, what="the gateway to serve")
            assert upstream_id() == "trace-123"  # passed through
            async with client.get("/user", headers=bearer(token)) as response:
                assert response.status == 200
            generated = upstream_id()  # made up here, and forwarded
            forwarded = echo_upstream.hits
            async with client.get("/admin", headers=bearer(token)) as response:
                assert response.status == 403
            async with client.get(f"/user?access_token={token}", headers={"X-Request-Id": token}) as response:
                assert response.status == 401
            assert echo_upstream.hits == forwarded  # refusals never reach the upstream
    finally:
        stop_process(process)
    text = log.read_text()
    assert token not in text and token.split(".")[1] not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "gateway.access"]
    first = next(a for a in access if a["request_id"] == "trace-123" and a["status"] == 200)
    assert first["route"] == "/user" and first["subject"] == "alice" and first["method"] == "GET"
    assert first["decision"] == "allow" and first["reason"] == "forwarded"
    assert first["latency_ms"] >= first["upstream_ms"] > 0
    assert any(a["request_id"] == generated and a["status"] == 200 for a in access)
    assert len(generated) == 32
    denied = next(a for a in access if a["status"] == 403)
    assert (denied["decision"], denied["reason"], denied["upstream_ms"]) == ("deny", "insufficient_scope", None)
    last = access[-1]
    assert last["path"] == "/user" and last["request_id"] != token and last["reason"] == "authorization_header_missing"


class CountingStream:
    """A stderr stand-in that records each write, so the test sees how lines were grouped."""

    def __init__(self):
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def batching_logger(stream: CountingStream, formatter: logging.Formatter | None = None) -> logging.Logger:
    handler = access_log.LineBatchingHandler(stream)
    handler.setFormatter(formatter or access_log.JsonFormatter())
    logger = logging.getLogger(f"test.batching.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


async def test_access_lines_of_one_loop_turn_leave_in_whole_line_writes_of_at_most_pipe_buf():
    stream = CountingStream()
    logger = batching_logger(stream)
    for n in range(40):  # ~40 x 150 bytes: more than one PIPE_BUF
        logger.info("line %d %s", n, "x" * 60)
    assert stream.writes == []  # nothing yet: the turn is not over
    await asyncio.sleep(0)  # the end of this turn
    lines = "".join(stream.writes).splitlines()
    assert [json.loads(line)["message"].split()[1] for line in lines] == [str(n) for n in range(40)]
    assert 1 < len(stream.writes) < 40
    assert all(len(w) <= access_log.PIPE_BUF and w.endswith("\n") for w in stream.writes)
    logger.info("later")
    await asyncio.sleep(0)
    assert json.loads(stream.writes[-1])["message"] == "later"  # an idle gateway's line still leaves at once


def test_without_a_running_loop_a_line_is_written_at_once():
    stream = CountingStream()
    batching_logger(stream).info("from a CLI command")
    assert len(stream.writes) == 1 and json.loads(stream.writes[0])["message"] == "from a CLI command"


async def test_batches_count_bytes_not_characters():
    """Found in review: text-format lines with non-ASCII subjects made writes larger than PIPE_BUF bytes."""
    stream = CountingStream()
    logger = batching_logger(stream, access_log.TextFormatter())
    for _ in range(40):
        logger.info("access", extra={"access": access_log.AccessRecord("id", "GET", "/x", subject="\u00e9" * 200)})
    await asyncio.sleep(0)
    sizes = [len(w.encode("utf-8")) for w in stream.writes]
    assert len(sizes) > 1 and max(sizes) <= access_log.PIPE_BUF, sizes
