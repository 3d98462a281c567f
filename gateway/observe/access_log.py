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
from dataclasses import dataclass

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
    """One access line, if `gateway.access` logs at INFO.

    After `configure()` the line is formatted here and handed straight to the
    process's log handler (no LogRecord, no logger walk, no caller lookup): at
    INFO that machinery cost more than the line.  Anywhere else (a test's or
    library user's own logging setup, pytest's capture beside ours) it goes
    through `logging` as any record would, with the same formatters.
    """
    if log.isEnabledFor(logging.INFO):
        handler, handlers = _direct, _root.handlers
        if handler is not None and len(handlers) == 1 and handlers[0] is handler:
            handler.write_access(record)
        else:
            log.info("access", extra={"access": record})


_root = logging.getLogger()
_direct: LineBatchingHandler | None = None  # the handler configure() installed, while it is the only one


def _clock(convert, date_format: str, millis_format: str):
    """A function giving a wall-clock time as a log line shows it: formatted once per millisecond, its date
    and time of day (`strftime`) once per second."""
    second, date, milli, text = -1, "", -1, ""

    def stamp(created: float) -> str:
        nonlocal second, date, milli, text
        now = int(created * 1000)
        if now != milli:
            whole, ms = divmod(now, 1000)
            if whole != second:
                second, date = whole, time.strftime(date_format, convert(whole))
            milli, text = now, millis_format % (date, ms)
        return text

    return stamp


_json_clock = _clock(time.gmtime, "%Y-%m-%dT%H:%M:%S", "%s.%03dZ")
_text_clock = _clock(time.localtime, "%Y-%m-%d %H:%M:%S", "%s,%03d")  # logging.Formatter's default asctime
_quote = json.encoder.encode_basestring_ascii  # what json.dumps(ensure_ascii=True) does to a str, in C
_JSON_ACCESS_HEAD = f'","level":"info","logger":"{log.name}","pid":'


def _nullable(text: str | None) -> str:
    return "null" if text is None else _quote(text)


def json_line(access: AccessRecord, created: float) -> str:
    """The access line in JSON, key for key what `json.dumps` of the record's fields gives, built as one string.

    Every string value goes through JSON's own escaping; only the numbers and
    the fixed keys are written as they are.
    """
    upstream = "null" if access.upstream_ms is None else repr(round(access.upstream_ms, 3))
    detail = "" if access.detail is None else f',"detail":{_quote(access.detail)}'
    return (f'{{"ts":"{_json_clock(created)}{_JSON_ACCESS_HEAD}{PID},"request_id":{_quote(access.request_id)},'
            f'"method":{_quote(access.method)},"path":{_quote(access.path)},"route":{_nullable(access.route)},'
            f'"decision":{_quote(access.decision)},"reason":{_quote(access.reason)},'
            f'"subject":{_nullable(access.subject)},"status":{int(access.status)},'
            f'"latency_ms":{round(access.latency_ms, 3)!r},"upstream_ms":{upstream},'
            f'"verification":{_nullable(access.verification)}{detail}}}')


def text_line(access: AccessRecord, created: float) -> str:
    """The access line for a terminal: the fields a person scans for, in a fixed order."""
    upstream = "-" if access.upstream_ms is None else f"{access.upstream_ms:.1f}ms"
    detail = "" if access.detail is None else f" ({access.detail})"
    return (f"{_text_clock(created)} {access.method} {access.path!r} -> {access.status} {access.decision} "
            f"{access.reason}{detail} route={access.route or '-'} sub={access.subject or '-'} "
            f"{access.latency_ms:.1f}ms upstream={upstream} id={access.request_id}")


class JsonFormatter(logging.Formatter):
    access_line = staticmethod(json_line)

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            return json_line(access, record.created)
        line = {"ts": _json_clock(record.created), "level": record.levelname.lower(), "logger": record.name,
                "pid": PID, "message": record.getMessage()}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    access_line = staticmethod(text_line)

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        return super().format(record) if access is None else text_line(access, record.created)


PIPE_BUF = 4096  # POSIX: writes up to this size to a pipe are never interleaved with other writers


class LineBatchingHandler(logging.StreamHandler):
    """Lines logged during one event-loop turn leave together, at the end of the turn.

    One write per line was most of what the access log cost (a system call per
    request); under load a turn finishes many requests, so their lines share
    writes of at most PIPE_BUF bytes of whole lines, and `--workers` sharing one
    pipe never interleave inside a line.  Outside a running loop (CLI commands,
    other threads) a line is written at once, after any that wait.  Lines still
    waiting when the process exits are written by `logging.shutdown` (atexit),
    which flushes every handler.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._batches: list[str] = []  # whole batches of at most PIPE_BUF bytes, ready to write
        self._pending: list[str] = []  # the batch being filled
        self._pending_bytes = 0
        self._scheduled_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def write_access(self, access: AccessRecord) -> None:
        """An access line from `write()`: this handler's formatter's access format, stamped now."""
        try:
            self.add(self.formatter.access_line(access, time.time()) + self.terminator)
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "formatting an access line failed"}))

    def add(self, line: str) -> None:
        size = len(line) if line.isascii() else len(line.encode("utf-8", "backslashreplace"))  # bytes
        with self.lock:
            if self._pending_bytes + size > PIPE_BUF and self._pending:
                self._batches.append("".join(self._pending))
                self._pending, self._pending_bytes = [], 0
            self._pending.append(line)
            self._pending_bytes += size
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write_waiting()
                return
            if self._scheduled_on is not loop:
                self._scheduled_on = loop
                loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock:
            self._scheduled_on = None
            try:
                self._write_waiting()
            except Exception:  # stderr gone or full: as StreamHandler, report and carry on serving
                self.handleError(logging.makeLogRecord({"msg": "writing log lines failed"}))

    def _write_waiting(self) -> None:
        if self._pending:
            self._batches.append("".join(self._pending))
            self._pending, self._pending_bytes = [], 0
        batches, self._batches = self._batches, []
        for batch in batches:
            self.stream.write(batch)
            self.stream.flush()


def configure(fmt: str = "auto", level: str = "INFO", stream=None) -> LineBatchingHandler:
    """Root logging to `stream` (stderr): `json`, `text`, or `auto` (text on a terminal, JSON otherwise).

    The handler it installs is also where `write()` puts access lines directly,
    as long as it stays the root logger's only handler.
    """
    global _direct
    stream = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = LineBatchingHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    _root.handlers[:] = [handler]
    _root.setLevel(level.upper())
    _direct = handler
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler
