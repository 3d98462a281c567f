"""The `gateway` console script, run as a reader types it (the .venv's bin, not `python -m`)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.config import REPO

GATEWAY = str(Path(sys.executable).parent / "gateway")


def gateway(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([GATEWAY, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
