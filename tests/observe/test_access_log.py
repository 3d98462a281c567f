"""The access log: JSON lines with request ids and never a token, written in whole-line batches per loop turn."""
import asyncio
import json
import logging
import os
import pty
import re
import subprocess
import sys

import aiohttp

from gateway.observe import access_log
from tests.support.config import OPERATED, REPO, RETRY_FAST, config_text, provider_yaml
from tests.support.gateway import eventually
from tests.support.keys import authorization, claims
from tests.support.processes import GatewayProcess, free_port, serve_process, stop_process



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


ODD = 'quote " backslash \\ tab \t nul \x00 bell \x07 e\u0301 \u00e9 line-sep \u2028 astral \U0001f600 del \x7f'


def expected_json_line(record: access_log.AccessRecord, ts: str) -> str:
    """The line as the formatter wrote it before it was built by hand: json.dumps of the fields, in this order."""
    line = {"ts": ts, "level": "info", "logger": "gateway.access", "pid": os.getpid(),
            "request_id": record.request_id, "method": record.method, "path": record.path, "route": record.route,
            "decision": record.decision, "reason": record.reason, "subject": record.subject, "status": record.status,
            "latency_ms": round(record.latency_ms, 3),
            "upstream_ms": None if record.upstream_ms is None else round(record.upstream_ms, 3),
            "verification": record.verification}
    if record.detail is not None:
        line["detail"] = record.detail
    return json.dumps(line, ensure_ascii=True, separators=(",", ":"))


async def test_a_json_access_line_is_json_dumps_of_its_fields_with_every_string_escaped():
    """Access lines are built from a template; every string in them still gets JSON's own escaping."""
    stream = CountingStream()
    handler = access_log.LineBatchingHandler(stream)
    handler.setFormatter(access_log.JsonFormatter())
    records = [
        access_log.AccessRecord("trace-1", "GET", "/user", route="/user", decision="allow", reason="forwarded",
                                subject="alice", status=200, latency_ms=3.14159, upstream_ms=2.0004,
                                verification="valid"),
        access_log.AccessRecord("id-2", "POST", "/x"),  # the defaults: nulls, a 500
        access_log.AccessRecord("id-3", ODD, "/" + ODD, route=ODD, decision="deny", reason="insufficient_scope",
                                subject=ODD, status=403, latency_ms=12, verification=ODD, detail=ODD),
    ]
    for record in records:
        handler.write_access(record)
    await asyncio.sleep(0)
    lines = "".join(stream.writes).splitlines()
    assert len(lines) == len(records) and all(line.isascii() for line in lines)
    for line, record in zip(lines, records):
        ts = json.loads(line)["ts"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts), ts
        assert line == expected_json_line(record, ts)
    assert json.loads(lines[2])["subject"] == ODD


def test_beside_another_handler_access_lines_are_ordinary_log_records(caplog):
    """Alone, the configured handler takes access lines directly; beside another (here pytest's capture) they
    are log records again, so both handlers get them, in the same format as before."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = CountingStream()
    try:
        access_log.configure("json", "INFO", stream)
        access_log.write(access_log.AccessRecord("alone", "GET", "/x"))
        root.addHandler(caplog.handler)
        beside = access_log.AccessRecord("beside", "GET", "/y")
        access_log.write(beside)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert [json.loads(line)["request_id"] for line in "".join(stream.writes).splitlines()] == ["alone", "beside"]
    assert [r.access for r in caplog.records if r.name == "gateway.access"] == [beside]


EXIT_MID_TURN = """
import asyncio, logging, sys
from gateway.observe import access_log

access_log.configure(sys.argv[1], "INFO")

async def main():
    for n in range(3):
        access_log.write(access_log.AccessRecord(f"id-{n}", "GET", "/a", route="/a", decision="allow",
                                                 reason="forwarded", subject="alice", status=200, latency_ms=1.25))
    logging.getLogger("gateway").warning("leaving in %s", "this turn")
    raise SystemExit(0)  # before the end of the turn, when the lines would have been written

asyncio.run(main())
"""


def test_lines_still_waiting_when_the_process_exits_are_written(tmp_path):
    log = tmp_path / "out.log"
    with open(log, "wb") as stderr:
        subprocess.run([sys.executable, "-c", EXIT_MID_TURN, "json"], stderr=stderr, cwd=REPO, check=True, timeout=30)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line.get("request_id", line.get("message")) for line in lines] == [
        "id-0", "id-1", "id-2", "leaving in this turn"]
    assert {line["pid"] for line in lines} == {lines[0]["pid"]} and lines[0]["logger"] == "gateway.access"


async def test_on_a_terminal_access_lines_and_other_lines_are_text(tmp_path, echo_upstream, rsa_key):
    """`serve` with stderr on a terminal (a pty here) and no --log-format: text lines, access lines included."""
    gateway = GatewayProcess(tmp_path / "gw", echo_upstream.url, rsa_key)
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(gateway.config)],
                               cwd=REPO, stdout=terminal, stderr=terminal, start_new_session=True,
                               env={k: v for k, v in os.environ.items() if k != "GATEWAY_LOG_FORMAT"})
    os.close(terminal)
    os.set_blocking(controller, False)
    output = []

    def read_terminal() -> str:
        try:
            output.append(os.read(controller, 65536).decode())
        except BlockingIOError:
            pass
        return "".join(output)

    try:
        async def answered():
            try:
                async with aiohttp.ClientSession() as client:
                    async with client.get(f"{gateway.url}/public/x?access_token=secret", headers={"X-Request-Id": "tty-1"}) as response:
                        return response.status
            except aiohttp.ClientConnectionError:
                return None

        status = await eventually(answered, timeout=20, what="the gateway to answer")
        text = await eventually(lambda: "id=tty-1" in read_terminal() and read_terminal(), what="the access line")
    finally:
        stop_process(process)
        os.close(controller)
    access = next(line for line in text.splitlines() if "id=tty-1" in line)
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} GET '/public/x' -> {status} \w+ \w+ "
                        r"route=\S+ sub=- \d+\.\dms upstream=(\d+\.\dms|-) id=tty-1\r?", access), access
    assert re.search(r"\d\d,\d{3} INFO gateway: gateway listening on http://", text), text
    assert " -> 200 allow forwarded route=/** " in access, access
    assert "secret" not in text and "{" not in access
