"""Google's Wycheproof JOSE vectors through a running gateway, each group's keys served as the JWKS over HTTP.

For every group a gateway is started against a JWKS server publishing that
group's keys (secrets included where a group has no public key: they must
be ignored) plus one control key, whose token must get a 200 in the same
phase so a gateway that refuses everything cannot pass.  Counts per
category are printed at the end of the run (see conftest.py).
"""
import asyncio
import json
from collections import Counter

import pytest

from tests.security.wycheproof_cases import GATEWAY_ALGORITHMS, KNOWN_GAPS, all_vectors, jose_verdict, resign_cases
from tests.support import rawhttp
from tests.support.config import config_text, provider_yaml
from tests.support.gateway import running_gateway
from tests.support.keys import ProviderServer, SigningKey, claims
from tests.support.upstream import EchoUpstream

REPORT: dict[str, Counter] = {}
ROUTES = "  - path: /user/**\n    access: authenticated\n"
CONTROL = SigningKey.rsa("wycheproof-control")
CONTROL_TOKEN = CONTROL.sign(claims())  # signed once: python-jose re-loads (and re-validates) the key per token


def count(category: str, outcome: str) -> None:
    REPORT.setdefault(category, Counter())[outcome] += 1


def _send_all(port: int, tokens: list[str]) -> list[rawhttp.Answer]:
    connection = rawhttp.Connection(port)
    try:
        return [connection.request(rawhttp.build("GET", "/user/x", [("Authorization", f"Bearer {token}")]))
                for token in tokens]
    finally:
        connection.close()


@pytest.fixture
async def through_gateway():
    """send(keys, tokens): a fresh gateway whose JWKS (over HTTP) is these keys plus a control key; the answers."""
    async def send(public_keys: list[dict], tokens: list[str]) -> list[rawhttp.Answer]:
        server.jwks = {"keys": [*public_keys, CONTROL.public_jwk]}
        provider = provider_yaml(server.jwks_uri, algorithms="[" + ", ".join(GATEWAY_ALGORITHMS) + "]")
        async with running_gateway(config_text(echo.url, provider, ROUTES)) as gateway:
            answers = await asyncio.to_thread(_send_all, gateway.port, [*tokens, CONTROL_TOKEN])
        assert answers[-1].status == 200, answers[-1].body[:300]  # the gateway was up and accepting good tokens
        return answers[:-1]

    async with ProviderServer() as server, EchoUpstream() as echo:
        yield send


def _by_jwks(items, keys_of) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for item in items:
        grouped.setdefault(json.dumps(keys_of(item), sort_keys=True), []).append(item)
    return grouped


def _sendable(token: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in token)


@pytest.fixture(scope="module")
def vectors():
    return all_vectors()


async def test_every_raw_vector_is_401_json(vectors, through_gateway):
    """As published, no vector carries a JWT claim set, so every one (valid ones included) is a 401, never a 5xx."""
    failures = []
    for key_json, group in _by_jwks(vectors, lambda v: v.public).items():
        sendable = [v for v in group if _sendable(v.token)]
        answers = await through_gateway(json.loads(key_json), [v.token for v in sendable])
        for vector, answer in zip(sendable, answers):
            ok = answer.status == 401 and answer.is_json and set(answer.json()) == {"code", "description"}
            if ok and vector.valid:  # a correctly signed vector is refused for its shape or payload, not its signature
                ok = answer.json()["code"] != "invalid_signature"
            count(vector.category, "raw 401" if ok else f"raw {answer.status}")
            if not ok:
                failures.append((vector.key, vector.comment, answer.status, answer.body[:120]))
        for vector in group:
            if not _sendable(vector.token):
                count(vector.category, "raw not sendable as a header")
    assert failures == []
    assert sum(sum(c.values()) for c in REPORT.values()) >= len(vectors)


def test_valid_vectors_verify_with_python_jose(vectors):
    """The signature layer the gateway uses accepts what Wycheproof calls valid, unless it lacks the algorithm."""
    data_quirks = {("jws", 372), ("jws", 373)}  # marked valid, but the MAC covers bytes the token does not hold
    surprises = []
    for vector in vectors:
        verdict = jose_verdict(vector)
        count(vector.category, f"python-jose {verdict} ({'valid' if vector.valid else 'invalid'})")
        if vector.valid and verdict == "refused" and vector.key not in data_quirks:
            surprises.append((vector.key, vector.comment))
        if vector.valid and verdict == "unsupported":
            assert vector.jwe or vector.alg[:2] in ("PS", "Ed"), vector.key
    assert surprises == []


async def test_resigned_vectors_are_decided_by_the_signature_and_key_checks(vectors, through_gateway):
    """Each vector's defect carried onto our claims: only valid vectors in offered algorithms get through."""
    cases = resign_cases()
    for vector in set(v.key for v in vectors) - {c.vector.key for c in cases}:
        count(next(v.category for v in vectors if v.key == vector), "resigned n/a (JWE, JSON form or no header)")
    wrong = []
    for key_json, group in _by_jwks(cases, lambda c: c.vector.public).items():
        answers = await through_gateway(json.loads(key_json), [c.token for c in group])
        for case, answer in zip(group, answers):
            accepted = answer.status == 200
            refused = answer.status == 401 and answer.is_json
            outcome = "accepted" if accepted else "refused" if refused else f"status {answer.status}"
            if not case.expect_accept and case.vector.alg not in GATEWAY_ALGORITHMS:
                outcome += " (unsupported alg)"
            elif case.why.startswith("known gap"):
                outcome += " (known gap)"
            count(case.vector.category, f"resigned {outcome}")
            if accepted != case.expect_accept or not (accepted or refused):
                wrong.append((case.vector.key, case.vector.comment, case.why, answer.status, answer.body[:100]))
            assert "carried signature verifies" not in case.notes, case.vector.key
    assert wrong == []
    gaps = {c.vector.key for c in cases if c.why.startswith("known gap")}
    assert gaps == set(KNOWN_GAPS)  # a gap that closes must be taken off the list
