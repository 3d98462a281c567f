"""A clock a test moves ahead: time.monotonic() plus the jumps the test makes with `advance`.

It runs on time.monotonic's scale, so timestamps taken before it was handed
over (a key cache's start-up fetch) compare correctly with its readings.
"""
from __future__ import annotations

import time


class FakeClock:
    def __init__(self, base=time.monotonic):
        """`base`: the clock it runs on (time.time for the token checks, which compare with `exp`)."""
        self.base = base
        self.skipped = 0.0

    def __call__(self) -> float:
        return self.base() + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds
