"""Starting, watching and stopping the participants (each in its own process group)."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """One participant: started in a new session so its whole process group can be stopped."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict | None = None,
                 cwd: str | Path | None = None):
        self.name = name
        self.argv = argv
        self.log = log
        self._log_handle = open(log, "wb")
        self.popen = subprocess.Popen(argv, stdout=self._log_handle, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                      cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, port: int, timeout: float = 30.0) -> None:
        """Until an HTTP GET / on the port gets any answer; raises with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer on port {port} within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        else:
            # the leader is gone; make sure nothing it forked is left behind
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._log_handle.close()


# -- /proc readings -------------------------------------------------------------------
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(x) for x in handle.read().split()]
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    """The pid and every descendant (gunicorn and nginx fork workers; so may the gateway)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(_children(current))
    return found


def _status_kb(pid: int, field: str) -> int:
    """One `kB` field of /proc/PID/status (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid: int) -> int:
    """Resident set size of one process, kB (0 if gone)."""
    return _status_kb(pid, "VmRSS:")


def hwm_kb(pid: int) -> int:
    """Peak resident set size of one process, kB."""
    return _status_kb(pid, "VmHWM:")


def tree_rss_mb(pid: int) -> float:
    return sum(rss_kb(p) for p in tree(pid)) / 1024


def cpu_seconds(pid: int) -> float:
    """user+system CPU of the process tree so far (live processes only)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / _CLK_TCK
