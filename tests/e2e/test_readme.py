"""`make run`, the README's command lines exactly as printed, and `make stop`: end to end, in subprocesses."""
import json
import re
import socket

import pytest

from tests.e2e.readme_runner import (
    MAKE_RUN_DONE, README, REPO, Ports, Session, alive, expectation_problems, section, sh_lines,
)


def closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def stop_ends_everything(session: Session) -> None:
    """`make stop` ends the services and the foreground `make run` (which exits 0), and frees the ports."""
    run = session.make_run
    pids = run.pids()
    assert {"gateway", "devissuer", "run"} <= pids.keys(), pids
    stopped = run.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert run.process.wait(timeout=30) == 0  # the foreground part has ended too
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert list(run.run_dir.glob("*.pid")) == []
    assert closed(session.ports.gateway) and closed(session.ports.issuer) and closed(session.ports.admin)


@pytest.fixture
def session(tmp_path):
    session = Session(Ports(), tmp_path / "run")
    try:
        yield session
    finally:
        session.close()


def test_readme_commands_work_as_printed_after_make_run(session):
    """Every ```sh line of the README, run after `make run` as a reader would; but the walk-through (next test) and
    the HTTPS section (its own listener and certificates: tests/e2e/test_tls_walkthrough.py walks it)."""
    text = README.read_text(encoding="utf-8")
    for elsewhere in ("Protect your own app in five minutes", "HTTPS, client certificates and certificate-bound tokens"):
        text = text.replace(section(elsewhere), "")
    lines = sh_lines(text)
    assert lines[0].startswith("make run") and any(line.startswith("gateway token") for line in lines)
    results = session.run(lines)
    printed = session.make_run.lines
    # what make run prints: the reader's lines, then exactly the README's curl lines, and no log lines
    curls = [session.ports.rewrite(line) for line in sh_lines(section("Two commands")) if line.startswith("curl ")]
    assert [line for line in printed if line.startswith("curl ")] == curls
    assert printed[-1] == MAKE_RUN_DONE
    assert [line.split("=", 1)[0] for line in session.make_run.reader_lines()] == \
        ["source .venv/bin/activate", "export AUTH_ISSUER", "export USER_TOKEN", "export ADMIN_TOKEN"]
    assert not [line for line in printed if '"logger"' in line or " INFO " in line]
    assert f"Logs: {session.run_dir}/gateway.log" in "\n".join(printed)
    problems = [problem for ran in results for problem in expectation_problems(ran)]
    assert problems == []
    assert len(results) >= 10
    # the access log names what was missing on a deny line (item 12)
    log = [json.loads(line) for line in (session.run_dir / "gateway.log").read_text().splitlines()
           if line.startswith("{")]
    denied = [entry for entry in log if entry.get("status") == 403]
    assert denied and denied[0]["detail"] == "missing scope read:admin"
    stop_ends_everything(session)


def test_protect_your_own_app_walkthrough(session):
    """The README section, as printed: the example app, make run CONFIG= UPSTREAM=, tokens with claims, explain,
    test; and the example's routes.yaml is the rules the README shows."""
    walkthrough = section("Protect your own app in five minutes")
    shown = re.search(r"```yaml\n(.*?)```", walkthrough, re.S).group(1)
    assert shown in (REPO / "examples/orders/routes.yaml").read_text()
    results = session.run(sh_lines(walkthrough))
    assert [problem for ran in results for problem in expectation_problems(ran)] == []
    explained = [ran.output for ran in results if ran.line.startswith("gateway explain")]
    assert "scopes delete:orders; claim [https://example.com/roles] must equal 'admin'" in explained[0]
    assert f"token iss 'http://127.0.0.1:{session.ports.issuer}/'; this route accepts" in explained[0]
    assert "decision  403 insufficient_scope: missing scope delete:orders" in explained[0]
    assert "decision  200 allowed" in explained[1]
    assert "9 passed, 0 failed" in [ran.output for ran in results if ran.line.startswith("gateway test")][0]
    assert any("DELETE    /orders/*" in line for line in session.make_run.lines)  # make run printed the table
    log = (session.run_dir / "gateway.log").read_text()
    assert "\"detail\":\"claim [https://example.com/roles] must equal 'analyst'\"" in log
    stop_ends_everything(session)
