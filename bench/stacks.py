"""Summarise a py-spy `--format raw` profile (collapsed stacks) into per-request cost shares.

    python -m bench.stacks PROFILE.txt [--requests N --seconds S] [--top 25]

Prints, as % of all samples of the gateway process:
- phases of one request (first matching rule from the leaf up decides; see PHASES),
- the functions with the most inclusive and the most self time.
With --requests/--seconds (what wrk reported for the profiled window) each
share is also given as microseconds of the process's time per request.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (phase, file substring, function name or None); checked from the leaf towards the root,
# the first frame that matches any rule names the phase of the sample.
PHASES = [
    ("jose: token verification (cache miss)", "jose/", None),
    ("gateway: verifier/claims (cache miss)", "gateway/auth/verifier.py", None),
    ("gateway: token cache + authenticator", "gateway/auth/authenticator.py", None),
    ("gateway: token cache + authenticator", "gateway/auth/token_cache.py", None),
    ("gateway: bearer extraction", "gateway/auth/extractor.py", None),
    ("gateway: path canonicalisation", "gateway/pipeline/canonical_path.py", None),
    ("gateway: route match + access rule", "gateway/pipeline/route_table.py", None),
    ("gateway: route match + access rule", "gateway/auth/requirements.py", None),
    ("gateway: request header hygiene (upstream_request_headers)", "gateway/proxy/headers.py", "upstream_request_headers"),
    ("gateway: response header copy (downstream_response_headers)", "gateway/proxy/headers.py", "downstream_response_headers"),
    ("gateway: headers (other)", "gateway/proxy/headers.py", None),
    ("gateway: access log", "gateway/pipeline/auth_filter.py", "_log"),
    ("gateway: access log", "gateway/observe/access_log.py", None),
    ("logging", "logging/", None),
    ("aiohttp client: ClientSession._request (URL, headers, connector, send)", "aiohttp/client.py", None),
    ("aiohttp client: connector pool", "aiohttp/connector.py", None),
    ("aiohttp client: request building/sending", "aiohttp/client_reqrep.py", None),
    ("aiohttp client: response parsing (client_proto/parser)", "aiohttp/client_proto.py", None),
    ("aiohttp server: response (StreamResponse prepare/write)", "aiohttp/web_response.py", None),
    ("aiohttp http writer: socket writes of client and server (syscall time)", "aiohttp/http_writer.py", None),
    ("aiohttp server: request object (web_request)", "aiohttp/web_request.py", None),
    ("aiohttp server: protocol (web_protocol)", "aiohttp/web_protocol.py", None),
    ("aiohttp: streams", "aiohttp/streams.py", None),
    ("aiohttp: other", "aiohttp/", None),
    ("multidict/yarl", "multidict/", None),
    ("multidict/yarl", "yarl/", None),
    ("gateway: upstream pool, writing the request (syscall time)", "gateway/proxy/upstream_client.py", "UpstreamConnection.send"),
    ("gateway: upstream pool (lean client on aiohttp's C response parser)", "gateway/proxy/upstream_client.py", None),
    ("gateway: metrics (prometheus-client)", "prometheus_client/", None),
    ("gateway: metrics (prometheus-client)", "gateway/observe/metrics.py", None),
    ("gateway: forwarder (own code)", "gateway/proxy/forwarder.py", None),
    ("gateway: filter (own code)", "gateway/pipeline/auth_filter.py", None),
    ("fast path: client answer write (syscall time)", "gateway/ops/client_connection.py", "ClientConnection.write_whole"),
    ("fast path: answer head (aiohttp's C serializer)", "gateway/ops/client_connection.py", "whole_answer"),
    ("fast path: request parse (llhttp) and framing checks", "gateway/ops/client_connection.py",
     "ClientConnection._feed"),
    ("fast path: connection bookkeeping", "gateway/ops/client_connection.py", None),
    ("gateway: other", "gateway/", None),
    ("asyncio/uvloop event loop (C: epoll, sockets, callbacks)", "asyncio/runners.py", None),
    ("asyncio/uvloop event loop (C: epoll, sockets, callbacks)", "uvloop/", None),
]


def parse(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    """[(frames root->leaf as (func, file)), count]"""
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            match = _FRAME.match(raw)
            frames.append((match.group("func"), match.group("file")) if match else (raw, ""))
        stacks.append((frames, int(count)))
    return stacks


def phase_of(frames: list[tuple[str, str]]) -> str:
    for func, file in reversed(frames):
        for name, part, wanted in PHASES:
            if part in file and (wanted is None or func == wanted):
                return name
    return "other"


def summarise(stacks, top: int = 25) -> dict:
    total = sum(count for _, count in stacks) or 1
    phases, inclusive, self_time = Counter(), Counter(), Counter()
    for frames, count in stacks:
        phases[phase_of(frames)] += count
        seen = set()
        for func, file in frames:
            key = f"{func} ({file})"
            if key not in seen:
                inclusive[key] += count
                seen.add(key)
        func, file = frames[-1]
        self_time[f"{func} ({file})"] += count
    return {"samples": total, "phases": phases.most_common(), "inclusive": inclusive.most_common(top),
            "self": self_time.most_common(top)}


def render(summary: dict, us_per_sample: float | None = None) -> str:
    total = summary["samples"]
    lines = []

    def row(name, count):
        extra = f"  {count * us_per_sample:7.1f} us/req" if us_per_sample else ""
        return f"  {100 * count / total:5.1f}%{extra}  {name}"

    lines.append(f"{total} samples" + (f" ({total * us_per_sample:.0f} us of process time per request)"
                                        if us_per_sample else ""))
    lines.append("\nphases (the frame nearest the leaf that a rule recognises):")
    lines += [row(name, count) for name, count in summary["phases"]]
    lines.append("\ninclusive (a function and everything it calls):")
    lines += [row(name, count) for name, count in summary["inclusive"]]
    lines.append("\nself (the function itself, C code it calls without a Python frame included):")
    lines += [row(name, count) for name, count in summary["self"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--requests", type=int, help="requests served while profiling")
    parser.add_argument("--busy-seconds", type=float,
                        help="CPU seconds the gateway used while profiling (to turn shares into us/request)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    summary = summarise(parse(args.profile.read_text()), args.top)
    us = None
    if args.requests and args.busy_seconds:
        us = args.busy_seconds * 1e6 / args.requests / summary["samples"]
    print(render(summary, us))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
