"""Real processes, started as a user would: the Flask upstream under gunicorn and `python -m gateway serve`."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from tests.support.config import ECHO_ROUTES, REPO, config_text, provider_yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    """Poll until `url` answers with any HTTP status, or fail with a reason."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


def start_process(args: list[str], log: Path, env: dict | None = None, cwd: Path = REPO) -> subprocess.Popen:
    handle = open(log, "wb")
    return subprocess.Popen(args, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> int:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def start_flask_upstream(log: Path, *gunicorn_args: str, workers: int = 1, threads: int = 4,
                         ) -> tuple[subprocess.Popen, str]:
    """The shipped upstream under its shipped gunicorn settings; `gunicorn_args` add to them (e.g. an access log)."""
    port = free_port()
    process = start_process(
        [sys.executable, "-m", "gunicorn", "-c", "upstream/gunicorn.conf.py", *gunicorn_args, "upstream.app:app"],
        log, env={"UPSTREAM_BIND": f"127.0.0.1:{port}", "UPSTREAM_WORKERS": str(workers),
                  "UPSTREAM_THREADS": str(threads)})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", process=process)
    return process, url


def serve_process(config: Path, log: Path, *extra: str, admin_port: int | None = None, env: dict | None = None):
    """`python -m gateway serve` as a user runs it, JSON logs to `log`."""
    admin = ["--admin", f"127.0.0.1:{admin_port}"] if admin_port else []
    return start_process([sys.executable, "-m", "gateway", "serve", "--config", str(config),
                          "--log-format", "json", *admin, *extra], log, env=env, cwd=REPO)


class GatewayProcess:
    """`python -m gateway serve --config FILE`, as an operator runs it; keys are inlined (no JWKS fetch)."""

    def __init__(self, folder: Path, upstream_url: str, rsa_key, extra: str = "", routes: str = ECHO_ROUTES,
                 provider_extra: str = ""):
        folder.mkdir()
        self.port = free_port()
        jwks = json.dumps({"keys": [rsa_key.public_jwk]})
        provider = provider_yaml(None, algorithms="[RS256]", extra=f"jwks: {jwks}\n{provider_extra}")
        extra = f"admin:\n  listen: 127.0.0.1:{free_port()}\n{extra}"
        self.config = folder / "routes.yaml"
        self.config.write_text(config_text(upstream_url, provider, routes, extra, listen=f"127.0.0.1:{self.port}"))
        self.log = folder / "gateway.log"
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "GatewayProcess":
        self.process = serve_process(self.config, self.log, env={"PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log.read_text()}")
                try:
                    async with session.get(self.url + "/_probe") as response:
                        await response.read()
                        return self
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "the gateway process did not start listening within 20 s"
                await asyncio.sleep(0.05)

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak resident set since start) of the gateway process, in KiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
                if line.startswith(("VmRSS", "VmHWM"))}

    def stop(self) -> int:
        return stop_process(self.process) if self.process is not None else 0


@contextmanager
def dev_stack(folder: Path, gateway_args: list[str], env: dict | None = None):
    """The README's processes: the Flask app, the development issuer and `gateway serve GATEWAY_ARGS` on a
    free port (env AUTH_ISSUER, GATEWAY_LISTEN, GATEWAY_UPSTREAM set); yields (gateway port, issuer URL,
    key folder, gateway process) and stops all three."""
    gateway_port, issuer_port = free_port(), free_port()
    issuer, keys = f"http://127.0.0.1:{issuer_port}/", str(folder / "keys")
    processes = []
    try:
        upstream, upstream_url = start_flask_upstream(folder / "upstream.log")
        processes.append(upstream)
        processes.append(start_process([sys.executable, "-m", "gateway", "devissuer", "--listen",
                                        f"127.0.0.1:{issuer_port}", "--key-dir", keys], folder / "issuer.log"))
        wait_http(issuer + ".well-known/jwks.json", process=processes[-1])
        env = {"AUTH_ISSUER": issuer, "GATEWAY_LISTEN": f"127.0.0.1:{gateway_port}",
               "GATEWAY_UPSTREAM": upstream_url, **(env or {})}
        processes.append(start_process([sys.executable, "-m", "gateway", "serve", *gateway_args],
                                       folder / "gateway.log", env=env))
        yield gateway_port, issuer, keys, processes[-1]
    finally:
        for process in reversed(processes):
            stop_process(process)


class RedisServer:
    """`redis-server` as an operator runs it, on a free loopback port, without persistence."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:  # never a silent skip: the DPoP replay tests need the real thing
            raise RuntimeError("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = start_process([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)], self.folder / "redis.log")
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.folder / 'redis.log').read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not answer PING within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
