"""CPU of one access line at INFO over WARNING, in-process, with lines written to a real file (issue 14, target 5).

    .venv/bin/python -m bench.log_cost [--rounds 9] [--lines 16000]

The gateway's logging is set up as `serve` sets it up (`access_log.configure("json")`, stderr
pointed at a temporary file), then `access_log.write` is called on a cache-hit record N times per
event-loop turn, N = 1, 4, 8 and 32: under `wrk -c32` the static scenario writes about 7 lines per
log write (perf tracepoints on `write`), at the Flask scenario's pace fewer.  A round times the
same turns at WARNING and at INFO (`time.process_time`); the figure is the median of the rounds'
differences, so the event loop's own turn is not counted.  To time another copy of `gateway/`,
run it from outside the repo with that copy first on PYTHONPATH, as with bench.budget.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time

import uvloop

from gateway.observe import access_log
from gateway.observe.access_log import AccessRecord

LINES_PER_TURN = (1, 4, 8, 32)


def cache_hit_record() -> AccessRecord:
    """What a forwarded request on the bench's /admin route logs."""
    return AccessRecord("9f3c2a1b4d5e6f708192a3b4000000000012", "GET", "/admin", route="/admin", decision="allow",
                        reason="forwarded", subject="bench-user", status=200, latency_ms=0.6234, upstream_ms=0.4121,
                        verification="valid")


async def cpu_us_per_line(record: AccessRecord, per_turn: int, level: str, lines: int) -> float:
    logging.getLogger().setLevel(level)
    turns = lines // per_turn
    started = time.process_time()
    for _ in range(turns):
        for _ in range(per_turn):
            access_log.write(record)
        await asyncio.sleep(0)  # the end of the turn: the lines of the turn leave
    return (time.process_time() - started) / (turns * per_turn) * 1e6


async def measure(rounds: int, lines: int) -> dict[int, list[float]]:
    record = cache_hit_record()
    extra = {}
    for per_turn in LINES_PER_TURN:
        extra[per_turn] = []
        for _ in range(rounds):
            quiet = await cpu_us_per_line(record, per_turn, "WARNING", lines)
            extra[per_turn].append(await cpu_us_per_line(record, per_turn, "INFO", lines) - quiet)
    return extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--lines", type=int, default=16_000)
    args = parser.parse_args(argv)
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as log_file:
        os.dup2(log_file.fileno(), 2)  # a real file, as the bench's gateways write to
        try:
            access_log.configure("json", "INFO")
            extra = uvloop.run(measure(args.rounds, args.lines))
            logging.shutdown()
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
    print(f"access_log from {os.path.dirname(access_log.__file__)}")
    print("| lines per loop turn | CPU us per line, INFO - WARNING (median) | min | max |")
    print("| ---: | ---: | ---: | ---: |")
    for per_turn, figures in extra.items():
        print(f"| {per_turn} | {statistics.median(figures):.2f} | {min(figures):.2f} | {max(figures):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
