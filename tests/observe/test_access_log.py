"""The access log: JSON lines with request ids and never a token, written in whole-line batches per loop turn."""
import asyncio
import json
import logging

import aiohttp

from gateway.observe import access_log
from tests.support.config import OPERATED, RETRY_FAST, config_text, provider_yaml
from tests.support.gateway import eventually
from tests.support.keys import authorization, claims
from tests.support.processes import free_port, serve_process, stop_process



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
                headers = {**authorization(token), "X-Request-Id": "trace-123"}
                async with client.get("/user", headers=headers) as response:
                    return response.status == 200

            await eventually(served, timeout=20, what="the gateway to serve")
            assert upstream_id() == "trace-123"  # passed through
            async with client.get("/user", headers=authorization(token)) as response:
                assert response.status == 200
            generated = upstream_id()  # made up here, and forwarded
            forwarded = echo_upstream.hits
            async with client.get("/admin", headers=authorization(token)) as response:
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
