"""`make bench`: the gateway against direct, nginx and HAProxy jwt_verify, side by side.

Run through bench/run.sh (which installs wrk, nginx, haproxy and matplotlib).
Every figure that matters is a ratio between runs made in the same process,
in alternating order, over several rounds; absolute numbers are printed for
context only.  Exit status: 0, or 1 if any run had errors (socket errors,
non-2xx answers, a participant that failed its pre-flight checks), never
because a figure was slow.

Environment knobs (all optional):
  BENCH_QUICK=1            a smoke run: 1 round of 2 s, a 50k-request memory run
  BENCH_ROUNDS             alternating rounds (default 3)
  BENCH_DURATION           seconds per wrk run at 32 connections (default 6)
  BENCH_LAT_DURATION       seconds per 1-connection latency run (default 4)
  BENCH_CONNECTIONS        wrk connections for the throughput scenarios (default 32)
  BENCH_MEM_TOKENS         distinct tokens in the memory scenario (default 100000)
  BENCH_MEM_REQUESTS       requests in the memory scenario (default 500000)
  BENCH_MEM_ALG            ES256 (default: ~30 us to mint) or RS256 (~1 ms a token: +1-2.5 min)
  BENCH_MEM_TTL            seconds from minting to the memory tokens' exp (bounds that scenario)
  BENCH_SCENARIOS          comma list of memory,flask,latency,static (default all)
  BENCH_GATEWAY_SRC        a folder holding a `gateway` package to bench instead of the repo's
  BENCH_GATEWAY_WORKERS    e.g. "1 2": worker counts to bench (needs `serve --workers`)
  BENCH_GATEWAY_LOG_LEVEL  the gateway's GATEWAY_LOG_LEVEL during the bench (default WARNING)
  BENCH_INFO_LOG           1 (default): the static scenario also runs "gateway log", a gateway with
                           its access log on (INFO), for target 5; 0 leaves it out (~25 s less)
  BENCH_SWEEP_INTERVAL     seconds the gateway takes to sweep expired tokens (default 30)
  BENCH_RESULTS            output folder (default bench/results)
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import configs, procs, wrk
from .tokens import BenchIssuer, mint_many

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass
class Settings:
    quick: bool = False
    rounds: int = 3
    duration: float = 6.0
    lat_duration: float = 4.0
    warmup: float = 1.0
    connections: int = 32
    mem_tokens: int = 100_000
    mem_requests: int = 500_000
    mem_ttl: float = 240.0
    mem_alg: str = "ES256"
    sweep_interval: float = 30.0
    scenarios: tuple = ("memory", "flask", "latency", "static")
    gateway_workers: tuple = (1,)
    gateway_src: str | None = None
    gateway_log_level: str = "WARNING"
    info_log: bool = True
    results: Path = REPO / "bench" / "results"

    @classmethod
    def from_env(cls) -> "Settings":
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        s = cls(quick=quick)
        if quick:
            s.rounds, s.duration, s.lat_duration, s.warmup = 1, 2.0, 2.0, 0.5
            s.mem_tokens, s.mem_requests, s.mem_ttl = 10_000, 50_000, 45.0
        s.rounds = _env_int("BENCH_ROUNDS", s.rounds)
        s.duration = _env_float("BENCH_DURATION", s.duration)
        s.lat_duration = _env_float("BENCH_LAT_DURATION", s.lat_duration)
        s.connections = _env_int("BENCH_CONNECTIONS", s.connections)
        s.mem_tokens = _env_int("BENCH_MEM_TOKENS", s.mem_tokens)
        s.mem_requests = _env_int("BENCH_MEM_REQUESTS", s.mem_requests)
        s.mem_ttl = _env_float("BENCH_MEM_TTL", s.mem_ttl)
        s.mem_alg = os.environ.get("BENCH_MEM_ALG") or s.mem_alg
        s.sweep_interval = _env_float("BENCH_SWEEP_INTERVAL", s.sweep_interval)
        if os.environ.get("BENCH_SCENARIOS"):
            s.scenarios = tuple(x.strip() for x in os.environ["BENCH_SCENARIOS"].split(",") if x.strip())
        if os.environ.get("BENCH_GATEWAY_WORKERS"):
            s.gateway_workers = tuple(int(x) for x in os.environ["BENCH_GATEWAY_WORKERS"].split())
        s.gateway_src = os.environ.get("BENCH_GATEWAY_SRC") or None
        s.gateway_log_level = os.environ.get("BENCH_GATEWAY_LOG_LEVEL") or s.gateway_log_level
        s.info_log = os.environ.get("BENCH_INFO_LOG", "1") not in ("", "0")
        s.results = Path(os.environ.get("BENCH_RESULTS") or s.results)
        return s


@dataclass
class Participant:
    label: str
    url: str
    proc: procs.Proc | None = None  # None: wrk talks to the upstream itself
    kind: str = "proxy"  # direct | nginx | haproxy | gateway


@dataclass
class Scenario:
    name: str
    title: str
    connections: int
    duration: float
    participants: list[Participant]
    runs: dict = field(default_factory=dict)  # label -> [WrkResult, ...] in round order
    cpu: dict = field(default_factory=dict)  # label -> [cpu seconds of the proxy per run]
    rss_mb: dict = field(default_factory=dict)  # gateway label -> RSS after the scenario


class Bench:
    def __init__(self, settings: Settings):
        self.s = settings
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.stamp = stamp
        self.work = settings.results / "work"
        self.procs: list[procs.Proc] = []
        self.problems: list[str] = []  # every entry makes the exit status 1
        self.notes: list[str] = []
        self.scenarios: list[Scenario] = []
        self.memory: dict = {}
        self.rss_trace: list[tuple[float, float]] = []
        self.t0 = time.monotonic()

    # -- participants ---------------------------------------------------------------
    def start(self, name: str, argv: list[str], port: int, env: dict | None = None,
              cwd: Path | None = None) -> procs.Proc:
        proc = procs.Proc(name, argv, self.work / f"{name}.log", env=env, cwd=cwd)
        self.procs.append(proc)
        proc.wait_http(port)
        return proc

    def gateway_env(self, log_level: str | None = None) -> dict:
        paths = [str(REPO)]
        if self.s.gateway_src:
            paths.insert(0, str(Path(self.s.gateway_src).resolve()))
        return {"PYTHONPATH": os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "GATEWAY_LOG_LEVEL": log_level or self.s.gateway_log_level}

    def start_gateway(self, name: str, upstream_port: int, workers: int = 1,
                      issuer: BenchIssuer | None = None, log_level: str | None = None) -> tuple[procs.Proc, int]:
        port = procs.free_port()
        issuer = issuer or self.issuer
        cfg = configs.gateway(self.work, name, upstream_port, issuer.jwks(), (issuer.algorithm,))
        argv = gateway_argv(cfg, port, self.serve_options(), workers)
        # cwd is the work folder so that a developer's .env in the repo cannot change the bench
        return self.start(name, argv, port, env=self.gateway_env(log_level), cwd=self.work), port

    def serve_options(self) -> str:
        if not hasattr(self, "_serve_help"):
            self._serve_help = serve_help(self.gateway_env(), self.work)
        return self._serve_help

    def gateway_supports_workers(self) -> bool:
        return "--workers" in self.serve_options()

    def setup(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.issuer = BenchIssuer.create()
        (self.work / "bench-public.pem").write_bytes(self.issuer.public_pem())
        self.token = self.issuer.token(ttl=6 * 3600)
        self.flask_port, self.static_port = procs.free_port(), procs.free_port()

    def start_upstreams(self) -> None:
        self.start("flask", [str(VENV_BIN / "gunicorn"), "-c", "upstream/gunicorn.conf.py", "upstream.app:app"],
                   self.flask_port, cwd=REPO,
                   env={"UPSTREAM_BIND": f"127.0.0.1:{self.flask_port}", "UPSTREAM_WORKERS": "2",
                        "UPSTREAM_THREADS": "8"})
        self.start("nginx-static", ["nginx", "-c", str(configs.nginx_static(self.work, self.static_port)),
                                    "-e", str(self.work / "nginx-static.stderr.log")], self.static_port)

    def start_proxies(self) -> None:
        ports = {k: procs.free_port() for k in ("nginx_flask", "nginx_static", "ha_flask", "ha_static")}
        nginx_cfg = configs.nginx_proxy(self.work, {ports["nginx_flask"]: self.flask_port,
                                                    ports["nginx_static"]: self.static_port})
        nginx = self.start("nginx-proxy", ["nginx", "-c", str(nginx_cfg),
                                           "-e", str(self.work / "nginx-proxy.stderr.log")], ports["nginx_flask"])
        ha_cfg = configs.haproxy(self.work, {ports["ha_flask"]: self.flask_port,
                                             ports["ha_static"]: self.static_port},
                                 self.work / "bench-public.pem")
        check = subprocess.run(["haproxy", "-c", "-f", str(ha_cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("haproxy rejected the bench config:\n" + check.stdout + check.stderr)
        haproxy = self.start("haproxy", ["haproxy", "-db", "-f", str(ha_cfg)], ports["ha_flask"])
        url = "http://127.0.0.1:{}/admin".format
        self.flask_participants = [
            Participant("direct", url(self.flask_port), None, "direct"),
            Participant("nginx", url(ports["nginx_flask"]), nginx, "nginx"),
            Participant("haproxy", url(ports["ha_flask"]), haproxy, "haproxy"),
        ]
        self.static_participants = [
            Participant("direct", url(self.static_port), None, "direct"),
            Participant("nginx", url(ports["nginx_static"]), nginx, "nginx"),
            Participant("haproxy", url(ports["ha_static"]), haproxy, "haproxy"),
        ]
        workers = self.s.gateway_workers
        if any(w != 1 for w in workers) and not self.gateway_supports_workers():
            self.notes.append(f"gateway has no --workers option yet: benched with 1 worker only (asked {workers})")
            workers = (1,)
        for count in workers:
            label = "gateway" if count == 1 else f"gateway x{count}"
            gw_flask, p1 = self.start_gateway(f"gateway-flask-w{count}", self.flask_port, count)
            gw_static, p2 = self.start_gateway(f"gateway-static-w{count}", self.static_port, count)
            self.flask_participants.append(Participant(label, url(p1), gw_flask, "gateway"))
            self.static_participants.append(Participant(label, url(p2), gw_static, "gateway"))
        if self.s.info_log:  # target 5: the access log's cost, the same gateway with its log on
            gw_log, port = self.start_gateway("gateway-static-info-log", self.static_port, log_level="INFO")
            self.static_participants.append(Participant(LOGGING_GATEWAY, url(port), gw_log, "gateway"))

    # -- pre-flight: every participant answers the way the comparison assumes ------------
    def preflight(self) -> None:
        now = time.time()
        cases = {
            "valid admin token": (self.token, 200),
            "no token": (None, 401),
            "token without read:admin": (self.issuer.token(scope="read:user"), 403),
            "expired token": (self.issuer.token(exp=now - 120), 401),
            "token from another key": (BenchIssuer.create().token(), 401),
            "wrong audience": (self.issuer.token(aud="https://other.example"), 401),
        }
        for participant in self.flask_participants + self.static_participants:
            for case, (token, expected) in cases.items():
                if participant.kind in ("direct", "nginx") and expected != 200:
                    continue  # no auth there: only the happy path is compared
                status, body = _get(participant.url, token)
                if status != expected or (expected == 200 and b"Hello admin!" not in body):
                    self.problems.append(f"pre-flight: {participant.label} at {participant.url}: {case}: "
                                         f"HTTP {status}, expected {expected}")

    # -- throughput and latency -------------------------------------------------------------
    def run_scenario(self, sc: Scenario) -> None:
        print(f"\n== {sc.title}: wrk -t1 -c{sc.connections} -d{sc.duration:g}s, "
              f"{self.s.rounds} alternating round(s)", flush=True)
        headers = {"Authorization": f"Bearer {self.token}"}
        for p in sc.participants:  # warm pools, caches and JITs once
            self._wrk(p.url, sc.connections, self.s.warmup, headers)
            sc.runs[p.label], sc.cpu[p.label] = [], []
        for round_index in range(self.s.rounds):
            shift = round_index % len(sc.participants)
            order = sc.participants[shift:] + sc.participants[:shift]
            for p in order:
                before = procs.cpu_seconds(p.proc.pid) if p.proc else 0.0
                result = self._wrk(p.url, sc.connections, sc.duration, headers)
                cpu = (procs.cpu_seconds(p.proc.pid) - before) if p.proc else 0.0
                if result is None:
                    continue
                sc.runs[p.label].append(result)
                sc.cpu[p.label].append(cpu)
                if result.error_count:
                    self.problems.append(f"{sc.name}: {p.label} round {round_index + 1}: "
                                         f"{result.error_count} errors {result.errors}")
                print(f"   round {round_index + 1} {p.label:<11} {result.rps:>9.0f} req/s  "
                      f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.error_count}",
                      flush=True)
        for p in sc.participants:
            if p.kind == "gateway":
                sc.rss_mb[p.label] = round(procs.tree_rss_mb(p.proc.pid), 1)
        self.scenarios.append(sc)

    def _wrk(self, url: str, connections: int, duration: float, headers: dict, **kw):
        try:
            return wrk.run(url, connections=connections, duration=duration, headers=headers, **kw)
        except wrk.WrkError as exc:
            self.problems.append(f"wrk against {url}: {exc}")
            return None

    # -- memory -------------------------------------------------------------------------------
    def memory_load(self) -> None:
        s = self.s
        print(f"\n== memory: {s.mem_requests} requests carrying {s.mem_tokens} distinct valid {s.mem_alg} tokens "
              f"(gateway in front of the static upstream)", flush=True)
        tokens_file = self.work / "tokens.txt"
        issuer = BenchIssuer.create(s.mem_alg)
        exp = time.time() + s.mem_ttl
        minted = mint_many(issuer, s.mem_tokens, exp, tokens_file)
        print(f"   minted {s.mem_tokens} tokens in {minted:.1f}s, all expiring at +{s.mem_ttl:.0f}s", flush=True)
        gw, port = self.start_gateway("gateway-memory", self.static_port, issuer=issuer)
        self.memory_gateway = gw
        sampler = threading.Thread(target=self._sample_rss, args=(gw,), daemon=True)
        sampler.start()
        url = f"http://127.0.0.1:{port}/admin"
        self._wrk(url, self.s.connections, 1.0, {"Authorization": f"Bearer {issuer.token(ttl=s.mem_ttl)}"})
        time.sleep(1.0)
        baseline = procs.tree_rss_mb(gw.pid)
        one_token_file = self.work / "one-token.txt"  # the hit reference: same process, same client script
        one_token_file.write_text(issuer.token(ttl=s.mem_ttl) + "\n")
        phases = []
        for phase, count, source in ((FIRST_SIGHT, s.mem_tokens, tokens_file),
                                     (ONE_TOKEN, min(HIT_REQUESTS, s.mem_requests), one_token_file),
                                     (SEEN_BEFORE, s.mem_requests - s.mem_tokens, tokens_file)):
            if count <= 0:
                continue
            budget = exp - time.time() - 5
            if budget < 5:
                self.problems.append(f"memory: no time left before the tokens expire for phase {phase!r}; "
                                     "raise BENCH_MEM_TTL")
                break
            env = {"BENCH_TOKENS_FILE": str(source), "BENCH_MAX_REQUESTS": str(count)}
            before = procs.cpu_seconds(gw.pid)
            result = self._wrk(url, s.connections, budget, {}, script=REPO / "bench" / "tokens.lua", env=env)
            cpu = procs.cpu_seconds(gw.pid) - before
            if result is None:
                break
            phases.append({"phase": phase, **result.to_dict(), "cpu_s": round(cpu, 2),
                           "cpu_us_per_req": round(cpu / max(result.requests, 1) * 1e6, 1)})
            print(f"   {phase:<27} {result.requests:>7} req {result.rps:>8.0f} req/s  "
                  f"cpu {cpu / max(result.requests, 1) * 1e6:6.0f} us/req  errors {result.error_count}  "
                  f"RSS {procs.tree_rss_mb(gw.pid):6.1f} MB", flush=True)
            if result.error_count:
                self.problems.append(f"memory: {phase}: {result.error_count} errors {result.errors}")
            if not result.limit_reached:
                self.notes.append(f"memory: {phase} stopped at {result.requests} of {count} requests "
                                  "before the tokens' expiry; raise BENCH_MEM_TTL")
        served = sum(p["requests"] for p in phases if p["phase"] != ONE_TOKEN)
        self.memory = {
            "tokens": s.mem_tokens, "requests_planned": s.mem_requests, "requests_served": served,
            "token_exp_epoch": exp, "baseline_mb": round(baseline, 1),
            "after_load_mb": round(procs.tree_rss_mb(gw.pid), 1),
            "peak_mb": round(procs.hwm_kb(gw.pid) / 1024, 1), "phases": phases,
            "mint_seconds": round(minted, 1), "algorithm": s.mem_alg,
        }
        seen = [p for p in phases if p["phase"] == SEEN_BEFORE]
        if seen and seen[0]["cpu_us_per_req"] > 0.8 * phases[0]["cpu_us_per_req"]:
            self.notes.append("memory: tokens seen before cost about as much as new ones: the token cache "
                              "did not keep them (is its capacity below the number of distinct tokens?)")

    def memory_after_expiry(self) -> None:
        if not self.memory:
            return
        # an entry lives until exp + leeway; the sweeper runs every sweep_interval seconds
        ready = self.memory["token_exp_epoch"] + configs.LEEWAY + self.s.sweep_interval + 2
        wait = ready - time.time()
        if wait > 0:
            print(f"\n   waiting {wait:.0f}s for the memory run's tokens to expire and be swept", flush=True)
            time.sleep(wait)
        gw = self.memory_gateway
        after = procs.tree_rss_mb(gw.pid)
        self.memory["after_expiry_mb"] = round(after, 1)
        self.memory["peak_mb"] = round(procs.hwm_kb(gw.pid) / 1024, 1)
        self.memory["return_ratio"] = round(after / self.memory["baseline_mb"], 3)
        self.memory_done = True

    def _sample_rss(self, proc: procs.Proc) -> None:
        while proc.alive() and not getattr(self, "memory_done", False):
            self.rss_trace.append((round(time.monotonic() - self.t0, 2), round(procs.tree_rss_mb(proc.pid), 1)))
            time.sleep(0.5)

    # -- the whole run ------------------------------------------------------------------------
    def run(self) -> int:
        s = self.s
        print(f"bench: {'QUICK smoke run, ' if s.quick else ''}{s.rounds} round(s), "
              f"{os.cpu_count()} cores, gateway from {s.gateway_src or REPO}", flush=True)
        self.setup()
        self.start_upstreams()
        if "memory" in s.scenarios:
            self.memory_load()  # its tokens expire while the other scenarios run
        self.start_proxies()
        self.preflight()
        if "flask" in s.scenarios:
            self.run_scenario(Scenario("flask", "Flask app (gunicorn gthread 2x8) behind each proxy",
                                       s.connections, s.duration, list(self.flask_participants)))
        if "latency" in s.scenarios:
            self.run_scenario(Scenario("latency", "latency at one connection, Flask app",
                                       1, s.lat_duration, list(self.flask_participants)))
        if "static" in s.scenarios:
            self.run_scenario(Scenario("static", "static upstream (nginx return 200)",
                                       s.connections, s.duration, list(self.static_participants)))
        self.memory_after_expiry()
        return 0

    def stop_all(self) -> None:
        self.memory_done = True
        for proc in reversed(self.procs):
            proc.stop()


def gateway_version(src: str | None) -> str:
    """Which gateway was measured: the repo's commit, and whether gateway/ had uncommitted edits."""
    if src:
        return f"copy at {src}"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "gateway"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit or 'unknown'}{' + uncommitted edits in gateway/' if dirty else ''}"


def serve_help(env: dict, cwd: Path) -> str:
    """`gateway serve --help` of the copy under test: which options it has."""
    out = subprocess.run([sys.executable, "-m", "gateway", "serve", "--help"], capture_output=True,
                         text=True, env={**os.environ, **env}, cwd=cwd)
    return out.stdout


def gateway_argv(cfg: Path, port: int, help_text: str, workers: int = 1) -> list[str]:
    """The serve command line; options that only some versions have are used when present."""
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{port}"]
    if "--admin" in help_text:  # its default port is fixed: several gateways at once need their own
        argv += ["--admin", f"127.0.0.1:{procs.free_port()}"]
    if workers != 1:
        argv += ["--workers", str(workers)]
    return argv


FIRST_SIGHT = "first sight of each token"
ONE_TOKEN = "one token again (all hits)"
SEEN_BEFORE = "tokens seen before"
HIT_REQUESTS = 20_000  # the one-token phase: enough for a steady CPU figure, ~10 s
LOGGING_GATEWAY = "gateway log"  # the static scenario's gateway with GATEWAY_LOG_LEVEL=INFO


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


# -- summarising -------------------------------------------------------------------------------
def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(sc: Scenario) -> list[dict]:
    """One row per participant: medians over rounds, and medians of the per-round ratios."""
    rows = []
    direct = sc.runs.get("direct", [])
    haproxy = sc.runs.get("haproxy", [])
    cpu = {label: [c / max(r.requests, 1) * 1e6 for c, r in zip(sc.cpu.get(label, []), runs)]
           for label, runs in sc.runs.items()}
    for p in sc.participants:
        runs = sc.runs.get(p.label, [])
        if not runs:
            continue
        n = len(runs)
        row = {
            "participant": p.label, "kind": p.kind, "rounds": n,
            "rps": round(_median([r.rps for r in runs]), 1),
            "p50_ms": round(_median([r.p50_ms for r in runs]), 3),
            "p99_ms": round(_median([r.p99_ms for r in runs]), 3),
            "errors": sum(r.error_count for r in runs),
            "vs_direct": _ratio(runs, direct, "rps"),
            "vs_haproxy": _ratio(runs, haproxy, "rps"),
            "added_p50_ms": _diff(runs, direct, "p50_ms"),
            "added_p99_ms": _diff(runs, direct, "p99_ms"),
            "cpu_us_per_req": None, "cpu_vs_haproxy": None, "cpu_vs_gateway": None,
            "rss_mb": sc.rss_mb.get(p.label),
            "per_round": [r.to_dict() for r in runs],
        }
        if p.proc is not None and cpu.get(p.label):
            row["cpu_us_per_req"] = round(_median(cpu[p.label]), 1)
            row["cpu_vs_haproxy"] = _cpu_ratio(cpu[p.label], cpu.get("haproxy"))
            row["cpu_vs_gateway"] = _cpu_ratio(cpu[p.label], cpu.get("gateway"))
        rows.append(row)
    return rows


def _cpu_ratio(mine: list[float], reference: list[float] | None) -> float | None:
    """Median of the per-round ratios of CPU per request."""
    pairs = [a / b for a, b in zip(mine, reference or []) if b]
    return round(_median(pairs), 3) if pairs else None


def _ratio(runs, reference, attr) -> float | None:
    pairs = [getattr(a, attr) / getattr(b, attr) for a, b in zip(runs, reference) if getattr(b, attr)]
    return round(_median(pairs), 3) if pairs else None


def _diff(runs, reference, attr) -> float | None:
    pairs = [getattr(a, attr) - getattr(b, attr) for a, b in zip(runs, reference)]
    return round(_median(pairs), 3) if pairs else None


def _fmt(value, spec: str, none: str = "–") -> str:
    return none if value is None else format(value, spec)


def render_table(results: dict) -> str:
    lines = []
    for sc in results["scenarios"]:
        lines.append(f"\n{sc['title']} (wrk -t1 -c{sc['connections']}, {sc['duration']:g}s x {sc['rounds']} rounds; "
                     "medians; ratios are medians of per-round ratios)")
        lines.append(f"| {'participant':<11} | {'proxy CPU us/req':>16} | {'CPU vs HAProxy':>14} | {'req/s':>8} | "
                     f"{'p50 ms':>7} | {'p99 ms':>7} | {'+p50 ms':>7} | {'+p99 ms':>7} | {'errors':>6} | "
                     f"{'vs direct':>9} | {'vs HAProxy':>10} | {'RSS MB':>6} |")
        lines.append("|" + "|".join("-" * (w + 2) for w in (11, 16, 14, 8, 7, 7, 7, 7, 6, 9, 10, 6)) + "|")
        for row in sc["rows"]:
            lines.append(
                f"| {row['participant']:<11} | {_fmt(row['cpu_us_per_req'], '.0f'):>16} | "
                f"{_fmt(row.get('cpu_vs_haproxy'), '.2f'):>14} | {row['rps']:>8.0f} | "
                f"{row['p50_ms']:>7.3f} | {row['p99_ms']:>7.3f} | "
                f"{_fmt(row['added_p50_ms'] if row['kind'] != 'direct' else None, '+.3f'):>7} | "
                f"{_fmt(row['added_p99_ms'] if row['kind'] != 'direct' else None, '+.3f'):>7} | "
                f"{row['errors']:>6} | {_fmt(row['vs_direct'], '.2f'):>9} | {_fmt(row['vs_haproxy'], '.2f'):>10} | "
                f"{_fmt(row['rss_mb'], '.1f'):>6} |")
    mem = results.get("memory") or {}
    if mem:
        lines.append(f"\nmemory: {mem['requests_served']} requests, {mem['tokens']} distinct {mem.get('algorithm')} "
                     f"tokens (static upstream)")
        lines.append("| phase                        | requests |    req/s | gateway CPU us/req | errors |")
        lines.append("|------------------------------|----------|----------|--------------------|--------|")
        for ph in mem.get("phases", []):
            lines.append(f"| {ph['phase']:<28} | {ph['requests']:>8} | {ph['rps']:>8.0f} | "
                         f"{ph['cpu_us_per_req']:>18.0f} | {ph['error_count']:>6} |")
        lines.append(f"RSS: before load {mem['baseline_mb']:.1f} MB, peak {mem['peak_mb']:.1f} MB, "
                     f"after load {mem['after_load_mb']:.1f} MB, after expiry+sweep "
                     f"{_fmt(mem.get('after_expiry_mb'), '.1f')} MB "
                     f"(x{_fmt(mem.get('return_ratio'), '.2f')} of before)")
    return "\n".join(lines)


def targets(results: dict) -> list[dict]:
    """Issue 14's targets, each judged on this run's table (informational: never the exit status).

    CPU per request is the headline: every ratio is a median of per-round ratios, proxy against
    proxy, which moves far less on a shared machine than throughput does.
    """
    out = []
    by = {sc["name"]: {r["participant"]: r for r in sc["rows"]} for sc in results["scenarios"]}

    def add(name, value, goal, ok):
        out.append({"target": name, "measured": value, "goal": goal, "holds": ok})

    def at_most(value, limit):
        return None if value is None else value <= limit

    static = by.get("static", {})
    gw = static.get("gateway")
    if gw and gw["cpu_vs_haproxy"] is not None:
        add("1. static upstream, cache hit: gateway CPU/req vs HAProxy's", gw["cpu_vs_haproxy"], "<= 2.0",
            at_most(gw["cpu_vs_haproxy"], 2.0))
        add("1. stretch", gw["cpu_vs_haproxy"], "<= 1.5", at_most(gw["cpu_vs_haproxy"], 1.5))
    flask = by.get("flask", {})
    gw, ha = flask.get("gateway"), flask.get("haproxy")
    if gw and gw["cpu_vs_haproxy"] is not None:
        add("2. Flask: gateway CPU/req vs HAProxy's", gw["cpu_vs_haproxy"], "<= 2.0",
            at_most(gw["cpu_vs_haproxy"], 2.0))
    if gw and ha and gw["vs_direct"] is not None and ha["vs_direct"] is not None:
        add("2. Flask: throughput kept vs direct, gateway vs HAProxy", f"{gw['vs_direct']} vs {ha['vs_direct']}",
            ">= HAProxy's, zero errors", gw["vs_direct"] >= ha["vs_direct"] and gw["errors"] == 0)
    latency = by.get("latency", {})
    gw, ha = latency.get("gateway"), latency.get("haproxy")
    if gw and ha:
        for key, label in (("added_p50_ms", "p50"), ("added_p99_ms", "p99")):
            if gw[key] is None or ha[key] is None:
                continue
            ratio = round(gw[key] / ha[key], 2) if ha[key] > 0 else None
            add(f"3. one connection: added {label}, gateway vs HAProxy (ms)",
                f"{gw[key]:+.3f} vs {ha[key]:+.3f} ({_fmt(ratio, '.2f', 'n/a')}x)", "<= 2x HAProxy's",
                at_most(ratio, 2.0))
    mem = results.get("memory") or {}
    phases = mem.get("phases", [])
    hit = next((p for p in phases if p["phase"] == ONE_TOKEN), None)
    verify = results.get("verify_us", {}).get(mem.get("algorithm"))
    if phases and phases[0]["phase"] == FIRST_SIGHT and hit and hit.get("cpu_us_per_req") and verify:
        extra = phases[0]["cpu_us_per_req"] - hit["cpu_us_per_req"]
        add(f"4. cache miss: extra gateway CPU of a first-seen token, in {mem.get('algorithm')} verifications",
            f"{extra / verify:.2f} ({extra:.0f} vs {verify:.0f} us)", "<= 1.2", extra / verify <= 1.2)
    logging_gw = static.get(LOGGING_GATEWAY)
    if logging_gw and logging_gw["cpu_vs_gateway"] is not None:
        add("5. access log at INFO: CPU/req vs the same gateway at WARNING", logging_gw["cpu_vs_gateway"],
            "<= 1.10", at_most(logging_gw["cpu_vs_gateway"], 1.10))
    if mem:  # issue 7's memory targets, kept
        add("issue 7: peak RSS under the token load (MB)", mem["peak_mb"], "< 150", mem["peak_mb"] < 150)
        if mem.get("return_ratio") is not None:
            add("issue 7: RSS after expiry vs before load", mem["return_ratio"], "<= 1.20",
                mem["return_ratio"] <= 1.2)
    return out


def render_targets(verdicts: list[dict]) -> str:
    lines = ["targets (issue 14), judged on this run's table:"]
    for t in verdicts:
        verdict = {True: "holds", False: "doesn't", None: "n/a"}[t["holds"]]
        lines.append(f"  [{verdict:>7}] {t['target']}: {t['measured']} (goal {t['goal']})")
    return "\n".join(lines)


def verify_us() -> dict:
    """What one signature verification costs in-process on this machine (the floor of a cache miss)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    out = {}
    data = b"x" * 400
    for algorithm in ("RS256", "ES256"):
        private = BenchIssuer.create(algorithm).private_key
        public = private.public_key()
        if algorithm == "RS256":
            sig = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
            verify = lambda: public.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())  # noqa: E731
        else:
            sig = private.sign(data, ec.ECDSA(hashes.SHA256()))
            verify = lambda: public.verify(sig, data, ec.ECDSA(hashes.SHA256()))  # noqa: E731
        started = time.perf_counter()
        for _ in range(1000):
            verify()
        out[algorithm] = round((time.perf_counter() - started) / 1000 * 1e6, 1)
    return out


def main() -> int:
    settings = Settings.from_env()
    if shutil.which("wrk") is None or shutil.which("nginx") is None or shutil.which("haproxy") is None:
        print("bench: wrk, nginx and haproxy are needed; run `make bench` (bench/run.sh installs them)",
              file=sys.stderr)
        return 2
    settings.results.mkdir(parents=True, exist_ok=True)
    bench = Bench(settings)
    started = time.time()
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.problems.append("interrupted")
    except Exception as exc:  # a participant that does not start is an error of the run
        traceback.print_exc()
        bench.problems.append(f"bench aborted: {exc}")
    finally:
        bench.stop_all()
    results = {
        "stamp": bench.stamp, "wall_seconds": round(time.time() - started, 1),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "gateway": gateway_version(settings.gateway_src),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.__dict__.items()},
        "haproxy_limits": configs.HAPROXY_LIMITS,
        "verify_us": verify_us(),
        "scenarios": [{"name": sc.name, "title": sc.title, "connections": sc.connections,
                       "duration": sc.duration, "rounds": settings.rounds, "rows": summarise(sc)}
                      for sc in bench.scenarios],
        "memory": bench.memory, "rss_trace": bench.rss_trace,
        "problems": bench.problems, "notes": bench.notes,
    }
    results["targets"] = targets(results)
    table = render_table(results)
    print("\n" + "=" * 100 + f"\ngateway measured: {results['gateway']}; its access log off "
          f"(GATEWAY_LOG_LEVEL={settings.gateway_log_level}), as nginx's and HAProxy's are here" + table)
    if results["targets"]:
        print("\n" + render_targets(results["targets"]))
    for note in bench.notes:
        print(f"note: {note}")
    json_path = settings.results / f"bench-{bench.stamp}.json"
    json_path.write_text(json.dumps(results, indent=2))
    shutil.copyfile(json_path, settings.results / "latest.json")
    (settings.results / "latest.md").write_text(f"gateway: {results['gateway']}\n" + table.strip() + "\n")
    try:
        from .plot import plot
        png = settings.results / f"bench-{bench.stamp}.png"
        plot(results, png)
        shutil.copyfile(png, settings.results / "latest.png")
        print(f"\nresults: {json_path}, {png} (and latest.*); wall time {results['wall_seconds']:.0f}s")
    except Exception as exc:  # the plot is a convenience; the JSON and table are the result
        print(f"\nresults: {json_path} (no plot: {exc}); wall time {results['wall_seconds']:.0f}s")
    if os.environ.get("BENCH_KEEP_WORK", "") in ("", "0"):
        shutil.rmtree(bench.work, ignore_errors=True)
    if bench.problems:
        print("\nERRORS (exit status 1):", file=sys.stderr)
        for problem in bench.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
