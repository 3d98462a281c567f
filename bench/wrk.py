"""Running wrk and reading its results.

Every run gets bench/report.lua's `done()` hook appended, which prints one
`BENCH_JSON {...}` line after wrk's human report; `parse_output` reads that
line (and, as a fallback, wrk's own text) into a `WrkResult`.  This module
only measures and parses: it never judges a figure.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT_LUA = HERE / "report.lua"


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict = field(default_factory=dict)  # connect/read/write/status/timeout counts
    limit_reached: bool = False  # a request-limited script (tokens.lua) got to its limit

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rps"] = round(self.rps, 1)
        data["error_count"] = self.error_count
        return data


class WrkError(Exception):
    """wrk did not run or printed nothing we can read."""


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LAT_LINE = re.compile(r"^\s*(50|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_SUMMARY = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m),")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_output(text: str) -> WrkResult:
    """A WrkResult from wrk's stdout: the BENCH_JSON line if present, else wrk's text report."""
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
            lat = data["latency_us"]
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=data["duration_us"] / 1e6,
                p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000,
                mean_ms=lat["mean"] / 1000, max_ms=lat["max"] / 1000,
                errors={k: int(v) for k, v in data["errors"].items()},
            )
    summary = _SUMMARY.search(text)
    if summary is None:
        raise WrkError("wrk printed no summary:\n" + text[-2000:])
    percentiles = {int(p): float(v) * _UNITS[u] for p, v, u in _LAT_LINE.findall(text)}
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    socket = _SOCKET.search(text)
    if socket:
        errors.update(zip(("connect", "read", "write", "timeout"), map(int, socket.groups())))
    non2xx = _NON2XX.search(text)
    if non2xx:
        errors["status"] = int(non2xx.group(1))
    return WrkResult(
        requests=int(summary.group(1)),
        duration_s=float(summary.group(2)) * _UNITS[summary.group(3)] / 1000,
        p50_ms=percentiles.get(50, float("nan")), p90_ms=percentiles.get(90, float("nan")),
        p99_ms=percentiles.get(99, float("nan")), mean_ms=float("nan"), max_ms=float("nan"),
        errors=errors,
    )


def run(url: str, *, connections: int, duration: float, threads: int = 1,
        headers: dict[str, str] | None = None, script: Path | None = None,
        env: dict[str, str] | None = None, timeout_s: float = 10.0, wrk: str = "wrk") -> WrkResult:
    """One wrk run against `url`; `script` (Lua) is combined with report.lua."""
    lua = REPORT_LUA.read_text()
    if script is not None:
        lua = Path(script).read_text() + "\n" + lua
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
        lua_path = handle.name
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            f"--timeout={timeout_s:g}s", "--latency", "-s", lua_path]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    try:
        text, reached = _run_until_limit(argv, env, duration + 60)
        result = parse_output(text)
        result.limit_reached = reached
        return result
    finally:
        os.unlink(lua_path)


LIMIT_MARKER = "BENCH_LIMIT_REACHED"


def _run_until_limit(argv: list[str], env: dict | None, timeout: float) -> tuple[str, bool]:
    """Run wrk, reading its output as it comes.

    A script that stops its thread after N requests (tokens.lua) prints
    LIMIT_MARKER; wrk's main thread would still sleep out the whole `-d`, so
    it gets SIGINT, which wrk handles by reporting at once with the real
    elapsed time.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    reached = False
    try:
        for line in proc.stdout:
            if line.strip() == LIMIT_MARKER:
                reached = True
                proc.send_signal(signal.SIGINT)
                continue
            lines.append(line)
        stderr = proc.stderr.read()
        proc.wait()
    finally:
        timer.cancel()
    if proc.returncode != 0:
        raise WrkError(f"wrk exited {proc.returncode}: {stderr.strip() or ''.join(lines).strip()}")
    return "".join(lines), reached
