"""A seeded fuzzer against a running gateway: thousands of mutated tokens and request targets over raw sockets.

Every answer must be either the upstream's (and then only for a target whose
canonical form is a public route, or a token that really verifies) or a
gateway-made 4xx JSON `{code, description}`; never a 5xx, a hang or a
dropped connection; and a valid request interleaved every so often must
still succeed.  Deterministic (fixed seed) so a failure replays.
"""
import asyncio
import base64
import json
import random
import string

from jose import jws

from gateway.pipeline.canonical_path import split_target
from tests.support import rawhttp
from tests.security.stack import echoed
from tests.support.keys import b64url

SEED = 20240611
TOKENS = 1500
TARGETS = 1500
CHECK_EVERY = 250
B64 = string.ascii_letters + string.digits + "-_"
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
TRICKS = ["%2e", "%2E%2E", "..", ".", "//", "%2f", "%5c", "\\", ";", "%3b", "#", "?", "%00", "%ff", "%c3%a9",
          "%", "%g1", "@", ":", "~", "%7e", "*", "/..", "/./", "+", "&", "=", "%3A", "%40", "%25", "%252e", "/admin",
          "%61dmin", "A", "a", "-", "%0d%0a", "%e2%80%ae", "%C0%AE"]
RAW_TRICKS = ["\x01", "\x7f", "\xe9", "\t", " ", "\x00"]  # bytes the HTTP parser itself refuses
SEED_TARGETS = ["/public/x", "/admin/x", "/user/a/b", "/", "/public/a%20b?x=1", "/admin", "/public/%7Ex/y?q=%2F"]


def mutate_token(rng: random.Random, token: str) -> str:
    parts = token.split(".")
    choice = rng.randrange(12)
    if choice == 0:  # flip one character
        i = rng.randrange(len(token))
        return token[:i] + rng.choice(B64 + ".") + token[i + 1:]
    if choice == 1:  # delete a run
        i = rng.randrange(len(token))
        return token[:i] + token[i + rng.randint(1, 20):]
    if choice == 2:  # insert junk
        i = rng.randrange(len(token))
        return token[:i] + "".join(rng.choice(B64 + ".") for _ in range(rng.randint(1, 8))) + token[i:]
    if choice == 3:  # segments rearranged, dropped or repeated
        return ".".join(rng.choice(parts) for _ in range(rng.randint(1, 6)))
    if choice == 4:  # a forged header on the real payload and signature
        header = rng.choice([{"alg": "none"}, {"alg": "HS256", "kid": "rsa-1"}, {"alg": "RS256", "kid": "nope"},
                             {"alg": "RS256", "kid": "rsa-1", "crit": ["x"]}, {"alg": "ES256", "kid": "rsa-1"},
                             {"alg": "RS256", "jku": "http://127.0.0.1:1/"}, {"alg": "RS256", "kid": None}])
        return ".".join([b64url(json.dumps(header).encode()), parts[1], parts[2]])
    if choice == 5:  # a forged payload under the real signature
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
        payload[rng.choice(["scope", "exp", "aud", "iss", "sub"])] = rng.choice(
            ["read:admin", 9999999999, "x", None, [], {"a": 1}, 1e308, -1])
        return ".".join([parts[0], b64url(json.dumps(payload).encode()), parts[2]])
    if choice == 6:  # random base64url segments
        return ".".join(b64url(rng.randbytes(rng.randint(0, 300))) for _ in range(3))
    if choice == 7:  # truncated
        return token[:rng.randrange(len(token))]
    if choice == 8:  # printable garbage
        return "".join(rng.choice(PRINTABLE) for _ in range(rng.randint(1, 200)))
    if choice == 9:  # signature of another token
        return ".".join(parts[:2] + [b64url(rng.randbytes(256))])
    if choice == 10:  # oversized
        return token + "A" * rng.choice([100, 5000, 9000])
    return token.swapcase() if rng.random() < 0.5 else token[::-1]


def mutate_target(rng: random.Random) -> str:
    target = rng.choice(SEED_TARGETS)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(1, len(target) + 1)
        if rng.random() < 0.03:
            target = target[:i] + rng.choice(RAW_TRICKS) + target[i:]
        elif rng.random() < 0.8:
            target = target[:i] + rng.choice(TRICKS) + target[i:]
        else:
            target = target[:i] + target[i + 1:]
    return target if target.startswith("/") or rng.random() < 0.1 else "/" + target


def _is_public(seen_target: str) -> bool:
    path = seen_target.split("?")[0]
    return path == "/" or path == "/public" or path.startswith("/public/")


def run(port: int, valid: str, public_key: dict, rng: random.Random) -> dict:
    connection = rawhttp.Connection(port)
    stats = {"upstream": 0, "refused": 0, "checks": 0}
    problems = []
    jobs = [("token", None) for _ in range(TOKENS)] + [("target", None) for _ in range(TARGETS)]
    rng.shuffle(jobs)
    try:
        for index, (kind, _) in enumerate(jobs):
            if kind == "token":
                token = mutate_token(rng, valid)
                if any(c in token for c in "\r\n\x00"):
                    continue
                raw = rawhttp.build("GET", rng.choice(["/admin/x", "/user/x"]), [("Authorization", f"Bearer {token}")])
            else:
                token, target = None, mutate_target(rng)
                raw = rawhttp.build(rng.choice(["GET", "POST", "DELETE"]), target)
            answer = connection.request(raw)
            if answer.status == 200 and b'"target"' in answer.body:
                stats["upstream"] += 1
                seen = echoed(answer)
                if kind == "target" and not _is_public(seen["target"]):
                    problems.append(("forwarded without a token", raw[:120], seen["target"]))
                if kind == "target":
                    path, query = split_target(target)  # what the route table judged must be what went upstream
                    if seen["target"] != path + ("?" + query if query else ""):
                        problems.append(("forwarded another spelling", target, seen["target"]))
                if kind == "token":
                    try:
                        jws.verify(token, public_key, ["RS256"])
                    except Exception:
                        problems.append(("forged token accepted", token[:80]))
            elif 400 <= answer.status < 500 and answer.is_json and set(answer.json()) == {"code", "description"}:
                stats["refused"] += 1
            else:
                problems.append(("bad answer", raw[:120], answer.status, answer.body[:120]))
            if index % CHECK_EVERY == 0 or index == len(jobs) - 1:
                check = connection.request(rawhttp.build("GET", "/admin/x", [("Authorization", f"Bearer {valid}")]))
                stats["checks"] += 1
                if check.status != 200:
                    problems.append(("valid request failed", index, check.status, check.body[:120]))
    finally:
        connection.close()
    stats["problems"] = problems
    return stats


async def test_fuzzed_tokens_and_targets_get_clean_answers(stack):
    valid = stack.token("read:admin read:user")
    public_key = stack.rsa_key.public_jwk
    stats = await asyncio.to_thread(run, stack.port, valid, public_key, random.Random(SEED))
    assert stats["problems"] == []
    assert stats["refused"] > TOKENS  # the fuzzer did reach the gateway's own checks
    assert stats["checks"] >= (TOKENS + TARGETS) // CHECK_EVERY
    print(f"\nfuzz: {stats['upstream']} forwarded, {stats['refused']} refused with JSON, "
          f"{stats['checks']} valid checks passed")
