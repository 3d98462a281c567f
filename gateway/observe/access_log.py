"""One structured line per request (JSON by default, text on a terminal), and the process's log format.

What a line may carry is decided here, once: never the Authorization header,
never the query string (tokens travel there too), and anything in the path
or request id that looks like a JWT is masked.  Every other log record gets
the same format, so in JSON mode each line of output parses as JSON.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import itertools
import secrets
import time
from dataclasses import dataclass, fields

log = logging.getLogger("gateway.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}\Z")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?")
MAX_PATH = 512
PID = os.getpid()


def request_id(incoming: str | None) -> str:
    """The client's X-Request-Id if it is a plain, short, token-free id; a new one otherwise."""
    if incoming is not None and _REQUEST_ID.match(incoming) and not _JWT.search(incoming):
        return incoming
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"  # unique, not secret: cheaper than uuid4 per request


_ID_PREFIX = secrets.token_hex(10)  # per process, so workers and restarts never repeat an id
_ID_COUNTER = itertools.count()


def safe_path(path: str) -> str:
    """The path as logged: no query, JWT-looking parts masked, bounded length."""
    path = path.partition("?")[0]
    if "eyJ" in path:
        path = _JWT.sub("[jwt]", path)
    return path if len(path) <= MAX_PATH else path[:MAX_PATH] + "..."


@dataclass(slots=True)
class AccessRecord:
    """The facts of one request; `verification` is "valid", a rejection code, or None if no token was examined."""

    request_id: str
    method: str
    path: str
    route: str | None = None
    decision: str = "deny"
    reason: str = "internal_error"
    subject: str | None = None
    status: int = 500
    latency_ms: float = 0.0
    upstream_ms: float | None = None
    verification: str | None = None
    detail: str | None = None  # of a 403: the scope or claim condition that was not met


def write(record: AccessRecord) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("access", extra={"access": record})


_FIELDS = tuple(f.name for f in fields(AccessRecord) if f.name != "detail")  # detail only where there is one
_second: list = [None, ""]  # the last whole second formatted: one strftime per second, not per line


def _timestamp(created: float) -> str:
    whole = int(created)
    if _second[0] != whole:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        line = {"ts": _timestamp(record.created), "level": record.levelname.lower(), "logger": record.name,
                "pid": PID}
        if access is not None:
            for name in _FIELDS:  # flat str/int/float/None values: no deep copy as dataclasses.asdict makes
                line[name] = getattr(access, name)
            line["latency_ms"] = round(access.latency_ms, 3)
            if access.upstream_ms is not None:
                line["upstream_ms"] = round(access.upstream_ms, 3)
            if access.detail is not None:
                line["detail"] = access.detail
        else:
            line["message"] = record.getMessage()
            if record.exc_info:
                line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is None:
            return super().format(record)
        upstream = "-" if access.upstream_ms is None else f"{access.upstream_ms:.1f}ms"
        detail = "" if access.detail is None else f" ({access.detail})"
        return (f"{self.formatTime(record)} {access.method} {access.path!r} -> {access.status} {access.decision} "
                f"{access.reason}{detail} route={access.route or '-'} sub={access.subject or '-'} "
                f"{access.latency_ms:.1f}ms upstream={upstream} id={access.request_id}")


PIPE_BUF = 4096  # POSIX: writes up to this size to a pipe are never interleaved with other writers


class LineBatchingHandler(logging.StreamHandler):
    """Lines logged during one event-loop turn leave together, at the end of the turn.

    One write per line was most of what the access log cost (a system call per
    request); under load a turn finishes many requests, so their lines share
    writes of at most PIPE_BUF bytes of whole lines, and `--workers` sharing one
    pipe never interleave inside a line.  Outside a running loop (CLI commands,
    other threads) a line is written at once, after any that wait.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record) + self.terminator)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write_pending()
                return
            if self._scheduled_on is not loop:
                self._scheduled_on = loop
                loop.call_soon(self.flush)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:
            self._scheduled_on = None
            try:
                self._write_pending()
            except Exception:  # stderr gone or full: as StreamHandler, report and carry on serving
                self.handleError(logging.makeLogRecord({"msg": "writing log lines failed"}))

    def _write_pending(self) -> None:
        lines, self._pending = self._pending, []
        batches: list[list[str]] = [[]]
        size = 0
        for line in lines:
            length = len(line) if line.isascii() else len(line.encode("utf-8", "backslashreplace"))  # bytes
            if batches[-1] and size + length > PIPE_BUF:
                batches.append([])
                size = 0
            batches[-1].append(line)
            size += length
        for batch in batches:
            if batch:
                self.stream.write("".join(batch))
                self.stream.flush()


def configure(fmt: str = "auto", level: str = "INFO") -> None:
    """Root logging to stderr: `json`, `text`, or `auto` (text on a terminal, JSON otherwise)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = LineBatchingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
