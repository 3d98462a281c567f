"""One structured line per request (JSON by default, text on a terminal), and the process's log format.

What a line may carry is decided here, once: never the Authorization header,
never the query string (tokens travel there too), and anything in the path
or request id that looks like a JWT is masked.  Every other log record gets
the same format, so in JSON mode each line of output parses as JSON.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import itertools
import secrets
import time
from dataclasses import asdict, dataclass

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


def write(record: AccessRecord) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("access", extra={"access": record})


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        line = {"ts": _timestamp(record.created), "level": record.levelname.lower(), "logger": record.name,
                "pid": PID}
        if access is not None:
            fields = asdict(access)
            fields["latency_ms"] = round(access.latency_ms, 3)
            if access.upstream_ms is not None:
                fields["upstream_ms"] = round(access.upstream_ms, 3)
            line.update(fields)
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
        return (f"{self.formatTime(record)} {access.method} {access.path!r} -> {access.status} {access.decision} "
                f"{access.reason} route={access.route or '-'} sub={access.subject or '-'} "
                f"{access.latency_ms:.1f}ms upstream={upstream} id={access.request_id}")


def configure(fmt: str = "auto", level: str = "INFO") -> None:
    """Root logging to stderr: `json`, `text`, or `auto` (text on a terminal, JSON otherwise)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
