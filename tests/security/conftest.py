"""Fixtures for the attack suite: one fresh gateway stack per test (cheap: everything is in-process)."""
import pytest

from tests.security.stack import running_stack
from tests.support.upstream import EchoUpstream


@pytest.fixture
async def stack(rsa_key, ec_key):
    async with running_stack(rsa_key, ec_key) as running:
        yield running


@pytest.fixture
async def trap():
    """A server no token may make the gateway contact."""
    async with EchoUpstream() as server:
        yield server


def pytest_terminal_summary(terminalreporter):
    """The Wycheproof counts, per category, whenever those tests ran (wanted in the issue's closing note)."""
    from tests.security.test_wycheproof import REPORT

    if not REPORT:
        return
    terminalreporter.section("Wycheproof JOSE vectors through the gateway")
    totals = {}
    for category in sorted(REPORT):
        counts = REPORT[category]
        terminalreporter.line(f"{category:32} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
        for outcome, number in counts.items():
            totals[outcome] = totals.get(outcome, 0) + number
    terminalreporter.line("total: " + ", ".join(f"{k}: {v}" for k, v in sorted(totals.items())))
