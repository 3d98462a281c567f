"""What a cache miss costs beyond a hit, in signature verifications, timed in-process (issue 14, target 4).

    .venv/bin/python -m bench.miss_cost [--tokens 10000] [--rounds 5] [--algorithm ES256]

Each round builds a fresh authenticator and token cache (as a fresh gateway has) with the
bench's config, then times, in CPU (`time.process_time`) per call:
- miss: `Authenticator.authenticate` on each of `--tokens` distinct first-seen tokens, minted the
  way the memory run mints them (bench/tokens.py: one issuer, sub and jti per token);
- hit: the same call on one already-cached token, again and again (the memory run's hit pass);
- verify: `signature_verifies` alone on the same tokens with the same key (the divisor).
The printed figure is (miss - hit) / verify, each the median of the rounds; the memory run of
`make bench` reports the same ratio at the HTTP level.  Nothing here starts a process.  To time
another copy of `gateway/`, put it first on the path from outside the repo, as with bench.budget:
`cd /tmp && PYTHONPATH=/tmp/base:REPO REPO/.venv/bin/python -m bench.miss_cost`.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from gateway.auth.authenticator import Authenticator
from gateway.auth.jwks_cache import JwksCache
from gateway.auth.token_cache import TokenCache
from gateway.auth.verifier import signature_verifies, split_token
from gateway.config.loader.load import load_config
from gateway.pipeline import decide

from . import configs
from .budget import _finish
from .tokens import BenchIssuer


CHUNK = 200


def _cpu_seconds(call, items) -> float:
    started = time.process_time()
    for item in items:
        call(item)
    return time.process_time() - started


async def measure(tokens: int, rounds: int, algorithm: str) -> dict:
    issuer = BenchIssuer.create(algorithm)
    exp = int(time.time()) + 3600
    minted = [issuer.token(sub=f"user-{i:06d}", exp=exp, jti=f"bench-{i}") for i in range(tokens * rounds)]
    with tempfile.TemporaryDirectory() as work:
        config = load_config(configs.gateway(Path(work), "miss", 8000, issuer.jwks(), (algorithm,)), dotenv=None)
    caches = {p.name: JwksCache(p, None) for p in config.providers}
    for cache in caches.values():
        await cache.start()
    allowed = decide.route_for(config.routes, "GET", "/admin").providers
    key = next(iter(caches.values())).lookup(issuer.kid, algorithm)
    figures: dict[str, list[float]] = {"miss": [], "hit": [], "verify": []}
    for round_ in range(rounds):
        batch = minted[round_ * tokens:(round_ + 1) * tokens]  # never seen by any cache before
        authenticator = Authenticator(caches, TokenCache(config.limits.token_cache_entries))
        miss = lambda token: _finish(authenticator.authenticate(token, allowed))  # noqa: E731
        miss(minted[-1])  # the one token of the hit reference
        parts = [split_token(token) for token in batch]
        spent = dict.fromkeys(figures, 0.0)
        for start in range(0, tokens, CHUNK):  # interleaved in small chunks, so a load change hits all three alike
            spent["miss"] += _cpu_seconds(miss, batch[start:start + CHUNK])
            spent["hit"] += _cpu_seconds(miss, [minted[-1]] * CHUNK)
            spent["verify"] += _cpu_seconds(lambda p: signature_verifies(key, p.signing_input, p.signature),
                                            parts[start:start + CHUNK])
        for name, seconds in spent.items():
            figures[name].append(seconds / tokens * 1e6)
    median = {name: statistics.median(values) for name, values in figures.items()}
    return {"algorithm": algorithm, "tokens": tokens, "rounds": rounds,
            **{f"{name}_us": round(value, 1) for name, value in median.items()},
            "extra_in_verifies": round((median["miss"] - median["hit"]) / median["verify"], 2),
            "per_round": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--algorithm", default="ES256", choices=("ES256", "RS256"))
    args = parser.parse_args(argv)
    result = uvloop.run(measure(args.tokens, args.rounds, args.algorithm))
    print(f"{result['algorithm']}, {result['tokens']} distinct tokens x {result['rounds']} rounds (CPU us per call, "
          f"medians): miss {result['miss_us']}, hit {result['hit_us']}, one verification {result['verify_us']}; "
          f"(miss - hit) / verification = {result['extra_in_verifies']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
