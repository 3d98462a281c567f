"""The benchmark harness's own logic (bench/): parsing wrk and py-spy output and the ratio arithmetic.

No process is started and nothing is timed: speed is measured by `make bench`, never by a test.
"""
from __future__ import annotations

import pytest

from bench import harness, stacks, wrk
from bench.wrk import WrkResult

WRK_TEXT = """Running 5s test @ http://127.0.0.1:8080/admin
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    17.43ms    8.70ms 145.20ms   92.45%
    Req/Sec     1.90k   651.62     3.42k    80.00%
  Latency Distribution
     50%   14.91ms
     75%   21.81ms
     90%  850.00us
     99%    1.20s
  15143 requests in 8.01s, 2.20MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   1890.43
Transfer/sec:    280.61KB
"""

BENCH_JSON = ('BENCH_JSON {"requests":15143,"duration_us":8010338,"bytes":2301736,'
              '"errors":{"connect":0,"read":1,"write":0,"status":4,"timeout":0},'
              '"latency_us":{"mean":17431.6,"stdev":8701.8,"max":145201,"p50":14912,"p90":24652,'
              '"p99":55310,"p999":94396}}')


def test_the_json_line_of_report_lua_is_preferred():
    result = wrk.parse_output(WRK_TEXT + BENCH_JSON + "\n")
    assert result.requests == 15143
    assert result.duration_s == pytest.approx(8.010338)
    assert result.p50_ms == pytest.approx(14.912)
    assert result.p99_ms == pytest.approx(55.31)
    assert result.errors == {"connect": 0, "read": 1, "write": 0, "status": 4, "timeout": 0}
    assert result.error_count == 5
    assert result.rps == pytest.approx(15143 / 8.010338)


def test_wrk_text_report_is_read_with_its_units():
    result = wrk.parse_output(WRK_TEXT)
    assert result.requests == 15143
    assert result.duration_s == pytest.approx(8.01)
    assert result.p50_ms == pytest.approx(14.91)
    assert result.p90_ms == pytest.approx(0.85)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2, "status": 7}


def test_output_without_a_summary_is_an_error():
    with pytest.raises(wrk.WrkError):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def _run(rps: float, p50: float, errors: int = 0) -> WrkResult:
    return WrkResult(requests=int(rps * 10), duration_s=10.0, p50_ms=p50, p90_ms=p50, p99_ms=p50 * 2,
                     mean_ms=p50, max_ms=p50 * 3, errors={"status": errors})


def test_ratios_are_medians_of_per_round_ratios():
    sc = harness.Scenario("flask", "t", 32, 10, [
        harness.Participant("direct", "u", None, "direct"),
        harness.Participant("haproxy", "u", None, "haproxy"),
        harness.Participant("gateway", "u", None, "gateway"),
    ])
    # round 2 is a slow round for everybody: per-round ratios cancel it, ratios of medians would not
    sc.runs = {
        "direct": [_run(1000, 1.0), _run(500, 2.0), _run(1000, 1.0)],
        "haproxy": [_run(700, 1.1), _run(350, 2.2), _run(690, 1.1)],
        "gateway": [_run(600, 1.3), _run(300, 2.5), _run(620, 1.2, errors=2)],
    }
    rows = {row["participant"]: row for row in harness.summarise(sc)}
    assert rows["gateway"]["vs_direct"] == pytest.approx(0.6)
    assert rows["gateway"]["vs_haproxy"] == pytest.approx(round(600 / 700, 3))
    assert rows["gateway"]["added_p50_ms"] == pytest.approx(0.3)
    assert rows["gateway"]["errors"] == 2
    assert rows["direct"]["vs_direct"] == pytest.approx(1.0)
    table = harness.render_table({"scenarios": [{"name": "flask", "title": "t", "connections": 32, "duration": 10,
                                                 "rounds": 3, "rows": list(rows.values())}], "memory": {}})
    assert "| gateway     |" in table and "0.60" in table


def test_targets_are_judged_on_ratios():
    rows = [{"participant": "gateway", "vs_direct": 0.61, "errors": 0},
            {"participant": "haproxy", "vs_direct": 0.67, "errors": 0}]
    verdicts = harness.targets({"scenarios": [{"name": "flask", "rows": rows}], "memory": {}})
    assert [v["holds"] for v in verdicts] == [True, False]


def test_py_spy_collapsed_stacks_are_summarised_by_phase():
    raw = (
        "_run_module_as_main (<frozen runpy>:198);AuthFilter.handle (gateway/pipeline/auth_filter.py:61);"
        "Forwarder.forward (gateway/proxy/forwarder.py:51);ClientSession._request (aiohttp/client.py:700) 3\n"
        "_run_module_as_main (<frozen runpy>:198);AuthFilter.handle (gateway/pipeline/auth_filter.py:40);"
        "extract_bearer (gateway/auth/extractor.py:20) 1\n"
    )
    parsed = stacks.parse(raw)
    assert parsed[0][1] == 3
    assert parsed[1][0][-1] == ("extract_bearer", "gateway/auth/extractor.py")
    summary = stacks.summarise(parsed)
    phases = dict(summary["phases"])
    assert summary["samples"] == 4
    assert phases["gateway: bearer extraction"] == 1
    assert phases["aiohttp client: ClientSession._request (URL, headers, connector, send)"] == 3
    assert "25.0%" in stacks.render(summary)
