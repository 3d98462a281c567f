"""What an operator talks to around a running Gateway: the admin listener, reloads, worker reports.

`server.serve_forever` starts this next to the data plane.  A lone gateway
serves its own admin endpoints and watches routes.yaml; a `--workers` child
does neither (its supervisor does both for all workers) and instead writes
its readiness and config version to a small JSON file the supervisor reads.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from gateway.ops.admin import AdminServer, gateway_not_ready, start_admin
from gateway.ops.reload import Loader, Reloader

REPORT_INTERVAL = 0.2  # a worker's readiness file follows its state this closely
SYNC_EVERY = 5  # reports between metric syncs in a worker (about once a second)


@dataclass(frozen=True)
class ServeOptions:
    load: Loader | None = None  # re-reads and checks routes.yaml; None: no reloads
    path: str | None = None  # the routes.yaml to watch
    admin: bool = True  # False in a worker: the supervisor serves admin for all
    watch: bool = True  # False in a worker: the supervisor watches and sends SIGHUP
    worker_dir: str | None = None  # set in a worker: where it reports to its supervisor
    reuse_port: bool = False  # share the public port with sibling workers (SO_REUSEPORT)
    warnings: tuple[str, ...] = ()  # the lint warnings logged at start: a reload does not repeat them


def worker_report_path(directory: str | Path, pid: int) -> Path:
    return Path(directory) / f"worker-{pid}.json"


class Operations:
    def __init__(self, gateway, options: ServeOptions):
        self.gateway = gateway
        self.options = options
        self.reloader: Reloader | None = None
        self.admin: AdminServer | None = None
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        gateway, options = self.gateway, self.options
        if options.load is not None and options.path is not None:
            self.reloader = Reloader(gateway, options.load, options.path, gateway.metrics, options.warnings)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reloader.request, "SIGHUP")
            if options.watch and gateway.config.reload.watch:
                self.tasks.append(asyncio.create_task(self.reloader.watch(gateway.config.reload.interval)))
        if options.admin:
            gateway.metrics.add_process_metrics()
            self.admin = await start_admin(gateway.config.admin, lambda: gateway_not_ready(gateway),
                                           self.render_metrics)
        if options.worker_dir is not None:
            self.tasks.append(asyncio.create_task(self._report(Path(options.worker_dir))))

    def render_metrics(self) -> bytes:
        gateway = self.gateway
        gateway.metrics.sync(gateway.caches.values(), gateway.token_cache)
        return gateway.metrics.render()

    async def _report(self, directory: Path) -> None:
        """A worker's state for its supervisor, rewritten (atomically) whenever it changes."""
        gateway, path = self.gateway, worker_report_path(directory, os.getpid())
        last, ticks = None, 0
        while True:
            reasons = gateway_not_ready(gateway)
            state = {"pid": os.getpid(), "ready": not reasons, "reasons": reasons,
                     "config": self.reloader.digest if self.reloader else None}
            if state != last:
                temporary = path.with_suffix(".tmp")
                temporary.write_text(json.dumps(state))
                os.replace(temporary, path)
                last = state
            ticks += 1
            if ticks % SYNC_EVERY == 0:
                gateway.metrics.sync(gateway.caches.values(), gateway.token_cache)
            await asyncio.sleep(REPORT_INTERVAL)

    async def stop(self) -> None:
        if self.reloader is not None:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await self.reloader.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.options.worker_dir is not None:  # the supervisor sums what this worker counted last
            self.gateway.metrics.sync(self.gateway.caches.values(), self.gateway.token_cache)
        if self.admin is not None:
            await self.admin.stop()
