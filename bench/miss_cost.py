"""What a cache miss costs beyond a hit, in signature verifications, timed in-process (issue 14, target 4).

    .venv/bin/python -m bench.miss_cost [--tokens 6000] [--rounds 3] [--algorithm ES256]

Every figure is CPU time (`time.process_time`) per request, the median of the rounds; within
a round the measurements below take turns in chunks of 200 requests, so a change of load on
the machine hits them alike.  Tokens are minted as the memory run mints them (bench/tokens.py:
one issuer, a sub and jti per token), each used once; the config is the bench's.

- alone: the authenticator as the gateway calls it (`cached_bearer`, the fast path's look, then on
  a miss `authenticate`) on first-seen tokens (miss) and on one cached token (hit),
  and `signature_verifies` alone on the same tokens with the same key (verify, the divisor):
  (miss - hit) / verify is the issue's figure for the authenticator by itself.
- in the request path: the same miss and hit, each after the other steps of a request
  (bench.budget's cache-hit path: parse, route, headers, the system calls, ...), as the
  gateway runs them.  There the miss and the steps around it slow each other down (CPU caches
  and branch predictors are colder than when each repeats alone), which is why `make bench`'s
  memory run measures more than the authenticator alone.  "path + hit + verify" adds a bare
  signature check to a hit instead: what a miss would cost if all its Python were free.

Nothing here starts a process.  To time another copy of `gateway/`, put it first on the path
from outside the repo, as with bench.budget:
`cd /tmp && PYTHONPATH=/tmp/base:REPO REPO/.venv/bin/python -m bench.miss_cost`.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from gateway.auth.authenticator import Authenticator
from gateway.auth.token_cache import TokenCache
from gateway.auth.verifier import signature_verifies, split_token

from .budget import STEPS, Budget

CHUNK = 200
MEASURES = ("miss", "hit", "verify", "path + miss", "path + hit", "path + hit + verify")


def _finish(coroutine):
    """Run a coroutine that never suspends (a hit; a miss whose key is published) without an event-loop turn."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the authenticator suspended: is the token's key published?")


def _cpu_seconds(call, items) -> float:
    started = time.process_time()
    for item in items:
        call(item)
    return time.process_time() - started


async def measure(tokens: int, rounds: int, algorithm: str) -> dict:
    budget = Budget(algorithm)
    with tempfile.TemporaryDirectory() as work:
        await budget.setup(Path(work))
    try:
        logging.getLogger().setLevel(logging.WARNING)  # the bench's level: the access log is off
        steps = [getattr(budget, entry.method) for entry in STEPS if entry.in_sum and entry.step != "cache lookup"]
        allowed, cached = budget.route.providers, budget.token
        caches = budget.authenticator.caches
        key = next(iter(caches.values())).lookup(budget.issuer.kid, algorithm)
        exp = int(time.time()) + 3600
        figures: dict[str, list[float]] = {name: [] for name in MEASURES}
        for round_ in range(rounds):
            minted = [budget.issuer.token(sub=f"user-{i:06d}", exp=exp, jti=f"bench-{round_}-{i}")
                      for i in range(2 * tokens)]  # never seen by any cache before
            authenticator = Authenticator(caches, TokenCache(budget.config.limits.token_cache_entries))

            def authenticate(token):
                """As the gateway does: the fast path's look at the cache, and on a miss the general path's."""
                identity = authenticator.cached_bearer(token, allowed)
                return identity or _finish(authenticator.authenticate(token, allowed))

            authenticate(cached)

            def verify(token):
                _, _, signing_input, signature = split_token(token)  # outside the timing below
                return lambda: signature_verifies(key, signing_input, signature)

            def in_path(token):
                for step in steps:
                    step()
                authenticate(token)

            def in_path_verified(check):
                in_path(cached)
                check()

            spent = dict.fromkeys(MEASURES, 0.0)
            for start in range(0, tokens, CHUNK):
                alone, path = minted[start:start + CHUNK], minted[tokens + start:tokens + start + CHUNK]
                checks = [verify(token) for token in alone]
                spent["miss"] += _cpu_seconds(authenticate, alone)
                spent["hit"] += _cpu_seconds(authenticate, [cached] * len(alone))
                spent["verify"] += _cpu_seconds(lambda check: check(), checks)
                spent["path + miss"] += _cpu_seconds(in_path, path)
                spent["path + hit"] += _cpu_seconds(in_path, [cached] * len(path))
                spent["path + hit + verify"] += _cpu_seconds(in_path_verified, checks)
            for name, seconds in spent.items():
                figures[name].append(seconds / tokens * 1e6)
    finally:
        budget.close()
    us = {name: statistics.median(values) for name, values in figures.items()}
    verify_us = us["verify"]
    return {"algorithm": algorithm, "tokens": tokens, "rounds": rounds,
            "us": {name: round(value, 1) for name, value in us.items()},
            "alone_in_verifies": round((us["miss"] - us["hit"]) / verify_us, 2),
            "in_path_in_verifies": round((us["path + miss"] - us["path + hit"]) / verify_us, 2),
            "bare_verify_in_path_in_verifies": round((us["path + hit + verify"] - us["path + hit"]) / verify_us, 2),
            "per_round": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=6000, help="first-seen tokens per round and measure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--algorithm", default="ES256", choices=("ES256", "RS256"))
    args = parser.parse_args(argv)
    result = uvloop.run(measure(args.tokens, args.rounds, args.algorithm))
    us = result["us"]
    print(f"{result['algorithm']}, {result['tokens']} first-seen tokens x {result['rounds']} rounds, "
          f"CPU us per request (medians): " + ", ".join(f"{name} {value}" for name, value in us.items()))
    print(f"(miss - hit) / verify: alone {result['alone_in_verifies']}, in the request path "
          f"{result['in_path_in_verifies']}; a bare verify in the path: {result['bare_verify_in_path_in_verifies']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
