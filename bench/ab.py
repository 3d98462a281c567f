"""A/B: two or more copies of the gateway side by side, in alternating rounds.

    .venv/bin/python -m bench.ab BASE_SRC OTHER_SRC [...] [--upstream static|flask]
        [--rounds 5] [--duration 5] [--connections 32] [--env-B GATEWAY_LOG_LEVEL=INFO]

Each SRC is a folder holding a `gateway` package (e.g. `git archive HEAD gateway | tar -x -C /tmp/base`).
Prints, per copy, the median req/s, p50/p99, gateway CPU microseconds per request, and the
median per-round ratio against the first copy, which is how a proposed change should be judged on a
shared machine.  Nothing here edits any source tree.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from . import configs, procs, wrk
from .harness import REPO, VENV_BIN, gateway_argv, serve_help
from .tokens import BenchIssuer

def start_upstream(kind: str, work: Path, port: int) -> procs.Proc:
    """The upstream the side-by-side tools measure against: nginx `return 200`, or the Flask app (2x8)."""
    if kind == "static":
        proc = procs.Proc("nginx-static", ["nginx", "-c", str(configs.nginx_static(work, port)),
                                           "-e", str(work / "nginx.stderr")], work / "nginx.log")
    else:
        proc = procs.Proc("flask", [str(VENV_BIN / "gunicorn"), "-c", "upstream/gunicorn.conf.py", "upstream.app:app"],
                          work / "flask.log", cwd=REPO,
                          env={"UPSTREAM_BIND": f"127.0.0.1:{port}", "UPSTREAM_WORKERS": "2", "UPSTREAM_THREADS": "8"})
    proc.wait_http(port)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("srcs", nargs="+")
    parser.add_argument("--upstream", choices=("static", "flask"), default="static")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--path", default="/admin")
    parser.add_argument("--env", action="append", default=[],
                        help="INDEX:NAME=VALUE, an environment variable for copy INDEX (0-based)")
    parser.add_argument("--args", action="append", default=[],
                        help="INDEX:ARG, an extra `serve` argument for copy INDEX (e.g. 1:--workers=2)")
    parser.add_argument("--floor", action="store_true",
                        help="also run bench/experiments/floor_proxy.py: a relay with no auth, the least a Python proxy pays")
    parser.add_argument("--tls", type=int, action="append", default=[],
                        help="INDEX: that copy serves https with `gateway devcerts` certificates (wrk speaks TLS, "
                             "keep-alive as for http), e.g. the same SRC twice with --tls 1 for the cost of TLS")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "results" / "ab-work")
    args = parser.parse_args(argv)

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    issuer = BenchIssuer.create()
    token = issuer.token(ttl=3600)
    running: list[procs.Proc] = []
    try:
        up_port = procs.free_port()
        running.append(start_upstream(args.upstream, work, up_port))
        gateways = []
        if args.tls:
            from gateway.tools.devcerts import make_devcerts

            certs = make_devcerts(work / "devcerts")  # ca, server, server key, client, client key
        for index, src in enumerate(args.srcs):
            env = {"PYTHONPATH": str(Path(src).resolve()), "GATEWAY_LOG_LEVEL": "WARNING"}
            for item in args.env:
                where, _, assignment = item.partition(":")
                if int(where) == index:
                    name, _, value = assignment.partition("=")
                    env[name] = value
            extra = [item.partition(":")[2] for item in args.args if int(item.partition(":")[0]) == index]
            if index in args.tls:
                extra += ["--tls-cert", str(certs[1]), "--tls-key", str(certs[2])]
            port = procs.free_port()
            cfg = configs.gateway(work, f"gw{index}", up_port, issuer.jwks())
            argv = gateway_argv(cfg, port, serve_help(env, work)) + extra
            proc = procs.Proc(f"gw{index}", argv, work / f"gw{index}.log", env=env, cwd=work)
            running.append(proc)
            proc.wait_http(port)  # plain http to an https port gets a 400: an answer too
            scheme = "https" if index in args.tls else "http"
            gateways.append((f"{index}:{src}{' (tls)' if index in args.tls else ''}",
                             f"{scheme}://127.0.0.1:{port}{args.path}", proc))
        if args.floor:
            port = procs.free_port()
            proc = procs.Proc("floor", [str(VENV_BIN / "python"), str(REPO / "bench" / "experiments" / "floor_proxy.py"),
                                        str(port), str(up_port)], work / "floor.log",
                              env={"PYTHONPATH": str(REPO)}, cwd=work)
            running.append(proc)
            proc.wait_http(port)
            gateways.append(("floor (no auth)", f"http://127.0.0.1:{port}{args.path}", proc))
        headers = {"Authorization": f"Bearer {token}"}
        results = {label: [] for label, _, _ in gateways}
        for label, url, _ in gateways:
            wrk.run(url, connections=args.connections, duration=1, headers=headers)
        for round_index in range(args.rounds):
            shift = round_index % len(gateways)
            for label, url, proc in gateways[shift:] + gateways[:shift]:
                before = procs.cpu_seconds(proc.pid)
                result = wrk.run(url, connections=args.connections, duration=args.duration, headers=headers)
                cpu = procs.cpu_seconds(proc.pid) - before
                results[label].append((result, cpu))
                print(f"  round {round_index + 1} {label:<40} {result.rps:8.0f} req/s  "
                      f"cpu {cpu / max(result.requests, 1) * 1e6:6.0f} us/req  errors {result.error_count}",
                      flush=True)
        base = results[gateways[0][0]]
        summary = []
        for label, _, proc in gateways:
            runs = results[label]
            row = {
                "copy": label,
                "rps": statistics.median(r.rps for r, _ in runs),
                "p50_ms": statistics.median(r.p50_ms for r, _ in runs),
                "p99_ms": statistics.median(r.p99_ms for r, _ in runs),
                "cpu_us_per_req": statistics.median(c / max(r.requests, 1) * 1e6 for r, c in runs),
                "rps_vs_first": statistics.median(r.rps / b.rps for (r, _), (b, _) in zip(runs, base)),
                "cpu_vs_first": statistics.median((c / max(r.requests, 1)) / (bc / max(b.requests, 1))
                                                  for (r, c), (b, bc) in zip(runs, base)),
                "errors": sum(r.error_count for r, _ in runs),
                "rss_mb": round(procs.tree_rss_mb(proc.pid), 1),
            }
            summary.append(row)
        print(f"\n{args.upstream} upstream, wrk -c{args.connections} {args.duration:g}s x {args.rounds} rounds")
        print(f"| {'copy':<40} | req/s | p50 ms | p99 ms | CPU us/req | req/s vs first | CPU vs first | errors | RSS MB |")
        print("|" + "---|" * 9)
        for row in summary:
            print(f"| {row['copy']:<40} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                  f"{row['cpu_us_per_req']:.0f} | {row['rps_vs_first']:.2f} | {row['cpu_vs_first']:.2f} | "
                  f"{row['errors']} | {row['rss_mb']} |")
        (work / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(summary, indent=2))
        return 1 if any(row["errors"] for row in summary) else 0
    finally:
        for proc in reversed(running):
            proc.stop()


if __name__ == "__main__":
    raise SystemExit(main())

