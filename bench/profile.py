"""Profile the gateway under load with py-spy and say where the time goes per request.

    bash bench/profile.sh [--upstream static|flask] [--seconds 15] [--rate 200] [--miss]

Starts the upstream and one gateway (BENCH_GATEWAY_SRC selects another copy of the
`gateway` package), drives it with wrk -t1 -c32 on /admin with a valid token (with
--miss: a fresh token on every request, so every request is a cache miss), and samples
it with `py-spy record` in its default (blocking) mode.  Writes under bench/results/:
profile-<stamp>.txt (collapsed stacks), profile-<stamp>.svg (flame graph) and
profile-<stamp>.md (the summary printed at the end, from bench/stacks.py).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path

from . import configs, procs, stacks, wrk
from .ab import start_upstream
from .harness import REPO, VENV_BIN, gateway_argv, serve_help
from .tokens import BenchIssuer, mint_many


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", choices=("static", "flask"), default="static")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--miss", action="store_true", help="every request carries a new token")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.results / "profile-work"
    work.mkdir(parents=True, exist_ok=True)
    issuer = BenchIssuer.create()
    running: list[procs.Proc] = []
    src = os.environ.get("BENCH_GATEWAY_SRC")
    try:
        up_port = procs.free_port()
        running.append(start_upstream(args.upstream, work, up_port))
        port = procs.free_port()
        cfg = configs.gateway(work, "gateway", up_port, issuer.jwks())
        env = {"PYTHONPATH": os.pathsep.join(p for p in (src, str(REPO)) if p), "GATEWAY_LOG_LEVEL": os.environ.get("GATEWAY_LOG_LEVEL", "WARNING")}
        gateway = procs.Proc("gateway", gateway_argv(cfg, port, serve_help(env, work)), work / "gateway.log",
                             env=env, cwd=work)
        running.append(gateway)
        gateway.wait_http(port)
        url = f"http://127.0.0.1:{port}/admin"
        total = args.seconds + 10  # 2 s before the raw profile, 5 s of it again for the flame graph after
        wrk_kw: dict = {"connections": args.connections, "duration": total}
        if args.miss:
            count = int(2500 * total)  # more than the gateway can verify in that time
            print(f"minting {count} tokens for the cache-miss profile...", flush=True)
            mint_many(issuer, count, time.time() + 3600, work / "tokens.txt")  # RS256, as deployed
            wrk_kw.update(script=REPO / "bench" / "tokens.lua", headers={},
                          env={"BENCH_TOKENS_FILE": str(work / "tokens.txt"), "BENCH_MAX_REQUESTS": "0"})
        else:
            wrk_kw["headers"] = {"Authorization": f"Bearer {issuer.token()}"}
            wrk.run(url, connections=args.connections, duration=1, headers=wrk_kw["headers"])
        outcome: dict = {}
        load = threading.Thread(target=lambda: outcome.setdefault("wrk", wrk.run(url, **wrk_kw)))
        load.start()
        time.sleep(2)
        raw = args.results / f"profile-{stamp}.txt"
        cpu0, t0 = procs.cpu_seconds(gateway.pid), time.monotonic()
        spy = [str(VENV_BIN / "py-spy"), "record", "-p", str(gateway.pid), "-d", str(int(args.seconds)),
               "-r", str(args.rate), "-f", "raw", "-o", str(raw)]
        subprocess.run(spy, check=True, capture_output=True)
        cpu, window = procs.cpu_seconds(gateway.pid) - cpu0, time.monotonic() - t0
        subprocess.run([str(VENV_BIN / "py-spy"), "record", "-p", str(gateway.pid), "-d", "5", "-r", str(args.rate),
                        "-f", "flamegraph", "-o", str(raw.with_suffix(".svg"))], capture_output=True)
        load.join()
        result = outcome["wrk"]
        # py-spy pauses the process for each sample, so requests in the window come from wrk's rate
        requests = result.rps * window
        summary = stacks.summarise(stacks.parse(raw.read_text()))
        us_per_sample = cpu * 1e6 / max(requests, 1) / summary["samples"]
        header = (f"profile {stamp}: gateway {'from ' + src if src else 'of the work tree'}, {args.upstream} upstream, "
                  f"wrk -c{args.connections}, {'a new token per request (cache misses)' if args.miss else 'one token (cache hits)'}\n"
                  f"wrk under the profiler: {result.rps:.0f} req/s, errors {result.error_count}; "
                  f"gateway CPU {cpu * 1e6 / max(requests, 1):.0f} us per request in the window "
                  f"(py-spy adds overhead: compare shares, not absolute figures)\n")
        text = header + "\n" + stacks.render(summary, us_per_sample)
        (args.results / f"profile-{stamp}.md").write_text(text + "\n")
        print(text)
        print(f"\nwritten: {raw}, {raw.with_suffix('.svg')}, {raw.with_suffix('.md')}")
        return 0
    finally:
        for proc in reversed(running):
            proc.stop()


if __name__ == "__main__":
    raise SystemExit(main())
