"""Runs the README's ```sh lines as a reader types them after `make run`, and `make run`/`make stop` themselves.

The only liberty taken is the ports: every `make run` here gets free ones (and its own RUN_DIR), and the
README's 8080/9000/5001 are rewritten to them, so a developer's running copy is never touched.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.config import REPO
from tests.support.processes import free_port, wait_http

README = REPO / "README.md"
MAKE_RUN_DONE = "Ctrl-C here, or make stop, stops everything."
_STATUS = re.compile(r"#\s*(\d{3})\b\s*(.*)$")
_HTTP_STATUS = re.compile(r"^HTTP/[\d.]+ (\d{3})", re.M)


def section(title: str) -> str:
    """The README text under `## title`, up to the next `## `."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def sh_lines(text: str) -> list[str]:
    """The command lines of every ```sh block, in order (comment-only lines left out)."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line)
    return lines


def shell_env() -> dict:
    """The environment of a fresh terminal: no .venv on the PATH until the reader activates it."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "AUTH_ISSUER", "AUTH_AUDIENCE")}
    venv_bin = str(REPO / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p.rstrip("/") != venv_bin)
    return env


@dataclass
class Ports:
    gateway: int = field(default_factory=free_port)
    issuer: int = field(default_factory=free_port)
    upstream: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    app: int = field(default_factory=free_port)

    def rewrite(self, line: str) -> str:
        for old, new in (("localhost:8080", f"localhost:{self.gateway}"), ("127.0.0.1:9000", f"127.0.0.1:{self.issuer}"),
                         ("127.0.0.1:5001", f"127.0.0.1:{self.app}"), ("--port 5001", f"--port {self.app}")):
            line = line.replace(old, new)
        return line

    def make_settings(self, run_dir: Path) -> list[str]:
        return [f"GATEWAY_PORT={self.gateway}", f"ISSUER_PORT={self.issuer}", f"UPSTREAM_PORT={self.upstream}",
                f"ADMIN_PORT={self.admin}", f"RUN_DIR={run_dir}"]


class MakeRun:
    """`make run` in the foreground, as a terminal holds it; its printed lines are collected."""

    def __init__(self, command: str, ports: Ports, run_dir: Path):
        self.ports, self.run_dir = ports, run_dir
        args = command.split("#")[0].split() + ports.make_settings(run_dir)
        self.process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=shell_env(), start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_ready(self, timeout: float = 90.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"make run printed no '{MAKE_RUN_DONE}' in {timeout}s: {self.lines}") from None
            if line is None:
                raise RuntimeError(f"make run exited ({self.process.wait()}): {self.lines}")
            self.lines.append(line)
            if line == MAKE_RUN_DONE:
                return self.lines

    def reader_lines(self) -> list[str]:
        """What a reader pastes: `source` and `export` lines."""
        return [line for line in self.lines if line.startswith(("source ", "export "))]

    def pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in self.run_dir.glob("*.pid")}

    def stop(self) -> subprocess.CompletedProcess:
        """`make stop` as printed, with this run's RUN_DIR."""
        return subprocess.run(["make", "stop", f"RUN_DIR={self.run_dir}"], cwd=REPO, env=shell_env(),
                              capture_output=True, text=True, timeout=60)

    def kill(self) -> None:
        """Cleanup after a failed test: the whole process group, whatever state it is in."""
        if self.process.poll() is None:
            self.stop()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Ran:
    line: str
    output: str
    code: int


class Session:
    """A reader's second terminal: lines run in order in one bash, `&` lines and `make run` handled aside."""

    def __init__(self, ports: Ports, run_dir: Path):
        self.ports, self.run_dir = ports, run_dir
        self.make_run: MakeRun | None = None
        self.background: list[subprocess.Popen] = []
        self.results: list[Ran] = []

    def run(self, lines: list[str]) -> list[Ran]:
        batch: list[str] = []
        for line in lines:
            command = self.ports.rewrite(line)
            if command.startswith("make "):
                self._flush(batch)
                batch = []
                if command.startswith("make run"):
                    self.make_run = MakeRun(command, self.ports, self.run_dir)
                    self.make_run.wait_ready()
                continue  # make test / make check: not what this runs
            if command.rstrip().endswith("&"):
                self._flush(batch)
                batch = []
                self._start_background(command.rstrip()[:-1])
                continue
            if re.match(r"export \w+=\S*…", command):
                continue  # the README's abbreviated tokens: make run printed the real ones
            batch.append(command)
        self._flush(batch)
        return self.results

    def _preamble(self) -> str:
        printed = self.make_run.reader_lines() if self.make_run else []
        return "\n".join(["source .venv/bin/activate", *printed])

    def _start_background(self, command: str) -> None:
        process = subprocess.Popen(["bash", "-c", f"{self._preamble()}\nexec {command}"], cwd=REPO, env=shell_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.background.append(process)
        wait_http(f"http://127.0.0.1:{self.ports.app}/", process=process)

    def _flush(self, batch: list[str]) -> None:
        if not batch:
            return
        script = [self._preamble()]
        for index, command in enumerate(batch):
            script += [f"echo '@@@begin {index}'", command, f"echo \"@@@end {index} $?\""]
        done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=REPO, env=shell_env(), capture_output=True,
                              text=True, timeout=180)
        for index, command in enumerate(batch):
            chunk = done.stdout.split(f"@@@begin {index}\n", 1)[1]
            output, _, tail = chunk.partition(f"@@@end {index} ")
            self.results.append(Ran(command, output, int(tail.split("\n", 1)[0])))

    def close(self) -> None:
        if self.make_run is not None:
            self.make_run.kill()
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)


def expectation_problems(ran: Ran) -> list[str]:
    """A line's `# STATUS text` comment against what it printed; no comment: it must exit 0."""
    expected = _STATUS.search(ran.line)
    if ran.code != 0:
        return [f"{ran.line}: exit {ran.code}: {ran.output[-600:]}"]
    if expected is None:
        return []
    seen = _HTTP_STATUS.search(ran.output)
    status = seen.group(1) if seen else None
    if status != expected.group(1):
        return [f"{ran.line}: got status {status}, README says {expected.group(1)}: {ran.output[-600:]}"]
    text = expected.group(2).strip()
    if text and text not in ran.output:
        return [f"{ran.line}: {text!r} not in what it printed: {ran.output[-600:]}"]
    return []
