"""`serve --workers N`: N gateway processes on one port, and a supervisor for what must be single.

Each worker is an ordinary `gateway serve` process that binds the public
port with SO_REUSEPORT, so the kernel spreads new connections over them
(Linux hashes each connection to one listening socket; there is no shared
accept lock and no fd passing).  Workers share nothing at run time: each
has its own JWKS and token caches, which is fine because both are caches.

The supervisor (this module) owns the parts that must be one per gateway:
- the admin listener: /metrics sums every worker's counters through
  prometheus-client's multiprocess mode, /readyz is ready only when every
  worker is ready *and* all serve the same version of routes.yaml;
- the file watch: a changed routes.yaml becomes SIGHUP to every worker at
  once, so they reload together; a worker left behind (say its new
  provider's keys did not arrive) is sent SIGHUP again until it catches up;
- lifecycles: SIGHUP to the supervisor is forwarded, SIGTERM/SIGINT stop
  every worker, and a worker that dies is started again (a worker that
  keeps dying before it ever gets ready stops the whole gateway instead).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from gateway.ops.admin import start_admin
from gateway.config.loader import ConfigError
from gateway.config.model import GatewayConfig
from gateway.ops.operations import worker_report_path
from gateway.ops.reload import ConfigWatch, file_digest

log = logging.getLogger("gateway.workers")

RESTART_DELAY = 0.5
GIVE_UP_AFTER = 3  # workers in a row that died before they were ever ready
STOP_TIMEOUT = 15.0


class Worker:
    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.pid = process.pid
        self.started = time.monotonic()
        self.ever_ready = False
        self.hup_sent = 0.0


class Supervisor:
    def __init__(self, config: GatewayConfig, count: int, command: list[str], config_path: str, run_dir: Path):
        self.config = config
        self.count = count
        self.command = command
        self.config_path = Path(config_path)
        self.run_dir = run_dir
        self.tasks: set[asyncio.Task] = set()
        self.metrics_dir = run_dir / "metrics"
        self.metrics_dir.mkdir()
        self.workers: dict[int, Worker] = {}
        self.stopping = asyncio.Event()
        self.failed_starts = 0
        self.exit_code = 0

    async def _spawn(self) -> None:
        env = {**os.environ, "GATEWAY_WORKER_DIR": str(self.run_dir),
               "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        process = await asyncio.create_subprocess_exec(*self.command, env=env)
        self.workers[process.pid] = Worker(process)
        task = asyncio.create_task(self._wait(self.workers[process.pid]))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _wait(self, worker: Worker) -> None:
        code = await worker.process.wait()
        self._note_ready()
        self.workers.pop(worker.pid, None)
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(self.metrics_dir))
        worker_report_path(self.run_dir, worker.pid).unlink(missing_ok=True)
        if self.stopping.is_set():
            return
        self.failed_starts = 0 if worker.ever_ready else self.failed_starts + 1
        log.error("worker %d exited with %s%s", worker.pid, code,
                  "" if worker.ever_ready else " before it was ever ready")
        if self.failed_starts >= GIVE_UP_AFTER:
            log.error("%d workers in a row died before getting ready; stopping the gateway", self.failed_starts)
            self.exit_code = 1
            self.stopping.set()
            return
        await asyncio.sleep(RESTART_DELAY)
        if not self.stopping.is_set():
            await self._spawn()

    def _reports(self) -> dict[int, dict | None]:
        reports = {}
        for pid in self.workers:
            try:
                reports[pid] = json.loads(worker_report_path(self.run_dir, pid).read_text())
            except (OSError, ValueError):
                reports[pid] = None
        return reports

    def _note_ready(self) -> dict[int, dict | None]:
        reports = self._reports()
        for pid, report in reports.items():
            if report and report["ready"] and pid in self.workers:
                self.workers[pid].ever_ready = True
        return reports

    def not_ready(self) -> list[str]:
        reasons = []
        if len(self.workers) < self.count:
            reasons.append(f"{len(self.workers)} of {self.count} workers running")
        reports = self._note_ready()
        for pid, report in sorted(reports.items()):
            if report is None:
                reasons.append(f"worker {pid} is starting")
            else:
                reasons += [f"worker {pid}: {reason}" for reason in report["reasons"]]
        versions = {report["config"] for report in reports.values() if report}
        if len(versions) > 1:
            reasons.append("workers serve different versions of routes.yaml (a reload is under way, "
                           "or failed in some of them: see their logs)")
        return reasons

    def _signal_all(self, sig: int) -> None:
        for worker in list(self.workers.values()):
            try:
                worker.process.send_signal(sig)
            except ProcessLookupError:
                pass

    def _reload_all(self) -> None:
        log.info("reloading: SIGHUP to %d worker(s)", len(self.workers))
        now = time.monotonic()
        for worker in self.workers.values():
            worker.hup_sent = now
        self._signal_all(signal.SIGHUP)

    def _catch_up(self, interval: float) -> None:
        """SIGHUP again to workers serving another version than the file's, if some already serve it."""
        reports = self._reports()
        current = file_digest(self.config_path)
        versions = {pid: r["config"] for pid, r in reports.items() if r}
        if current not in versions.values() or len(set(versions.values())) < 2:
            return
        now = time.monotonic()
        for pid, version in versions.items():
            worker = self.workers.get(pid)
            if worker is not None and version != current and now - worker.hup_sent > 5 * interval:
                log.warning("worker %d still serves an older routes.yaml; asking it to reload again", pid)
                worker.hup_sent = now
                worker.process.send_signal(signal.SIGHUP)

    async def _tick(self, interval: float) -> None:
        """Note which workers got ready; with `reload.watch`, turn file changes into SIGHUP."""
        watch = ConfigWatch(self.config_path) if self.config.reload.watch else None
        while True:
            await asyncio.sleep(interval)
            self._note_ready()
            if watch is not None and watch.poll():
                self._reload_all()
            elif watch is not None:
                self._catch_up(interval)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_all)
        from gateway.observe.metrics import render_multiprocess

        admin = await start_admin(self.config.admin, self.not_ready, lambda: render_multiprocess(str(self.metrics_dir)))
        for _ in range(self.count):
            await self._spawn()
        log.info("supervising %d workers on %s:%d", self.count, self.config.listen_host, self.config.listen_port)
        ticker = asyncio.create_task(self._tick(self.config.reload.interval))
        try:
            await self.stopping.wait()
        finally:
            self.stopping.set()
            ticker.cancel()
            await self._stop_workers()
            if admin is not None:
                await admin.stop()
        return self.exit_code

    async def _stop_workers(self) -> None:
        self._signal_all(signal.SIGTERM)
        processes = [w.process for w in self.workers.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            self._signal_all(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in processes))


def unshared_replay_store(config: GatewayConfig) -> str | None:
    """Why a worker must not serve `config` (at start or at a reload): DPoP on a store only one process sees."""
    if config.dpop.replay_store == "memory" and any(p.dpop is not None for p in config.providers):
        return ("--workers with DPoP needs a shared replay store: each worker's memory store would accept the "
                "same proof once; set dpop.replay_store: redis://HOST:PORT/DB")
    return None


def worker_loader(load):
    """`load` for a worker process: also refuses what `supervise` refuses, so a reload or a restarted worker
    cannot turn DPoP on over per-worker memory stores."""
    def load_for_worker():
        config, warnings = load()
        problem = unshared_replay_store(config)
        if problem is not None:
            raise ConfigError([f"{config.source}: {problem}"])
        return config, warnings

    return load_for_worker


def supervise(config: GatewayConfig, count: int, command: list[str], config_path: str) -> int:
    if config.listen_port == 0:
        log.error("--workers needs a fixed port: with port 0 every worker would get a different one")
        return 2
    problem = unshared_replay_store(config)
    if problem is not None:
        log.error("%s", problem)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="gateway-workers-"))
    try:
        return asyncio.run(Supervisor(config, count, command, config_path, run_dir).run())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
