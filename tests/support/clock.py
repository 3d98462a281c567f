"""A clock a test moves ahead: time.monotonic() plus the jumps the test makes with `advance`.

It runs on time.monotonic's scale, so timestamps taken before it was handed
over (a key cache's start-up fetch) compare correctly with its readings.
"""
from __future__ import annotations

import time


class FakeClock:
    def __init__(self):
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds
