"""`python -m gateway test`: a table of expected decisions, run against the rules like a test suite.

Each case is a request (method, path, and the claims of a token that passed
verification, or none) and the status the gateway must answer; 200 means
"forwarded to the upstream".  Cases run through `decide.evaluate`, the
gateway's own decision steps, so a passing table is a statement about the
real gateway, not a model of it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.tools.claims_auth import ClaimsAuthenticator
from gateway.config.model import GatewayConfig
from gateway.config.loader.routes import HTTP_METHODS
from gateway.config.loader.sections import ConfigError, Problems, Section
from gateway.pipeline.decide import Outcome, evaluate
from gateway.config.yaml_source import LocatedList, LocatedMap, YamlProblem, environment, load_located

CASE_KEYS = ("name", "method", "path", "claims", "expect")


@dataclass(frozen=True)
class Case:
    line: int
    name: str
    method: str
    path: str
    claims: dict[str, Any] | None
    expect: int


def load_cases(path: str | Path) -> list[Case]:
    """Parse and check TESTS.yaml; raises ConfigError with file:line for every problem."""
    source = str(path)
    try:
        data = load_located(Path(path).read_text(encoding="utf-8"), environment(Path(".env")))
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the tests file: {exc.strerror}"]) from None
    except YamlProblem as exc:
        raise ConfigError([f"{source}:{exc.line}: {exc.message}"]) from None
    problems = Problems(source)
    if not isinstance(data, LocatedList) or not data:
        problems.add(getattr(data, "line", 1), "the tests file must be a non-empty list of cases")
        raise ConfigError(problems.items)
    cases = []
    for index, item in enumerate(data):
        line = data.item_lines[index]
        if not isinstance(item, LocatedMap):
            problems.add(line, "each case must be a mapping with method, path and expect")
            continue
        section = Section(item, "a test case", problems, CASE_KEYS)
        method = (section.get("method", str, required=True) or "").upper()
        if method and method not in HTTP_METHODS:
            problems.add(section.line("method"), f"unknown HTTP method {method!r}")
        target = section.get("path", str, required=True) or ""
        if target and not target.startswith("/"):
            problems.add(section.line("path"), "path must start with '/'")
        claims = section.get("claims", dict)
        expect = section.get("expect", int, required=True)
        if expect is not None and not 100 <= expect <= 599:
            problems.add(section.line("expect"), "expect must be an HTTP status code such as 200, 401 or 403")
        name = section.get("name", str) or f"{method} {target}"
        plain_claims = json.loads(json.dumps(claims)) if claims is not None else None  # detached from YAML
        cases.append(Case(line, name, method, target, plain_claims, expect or 0))
    if problems.items:
        raise ConfigError(problems.items)
    return cases


@dataclass(frozen=True)
class Result:
    case: Case
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return self.outcome.status == self.case.expect


async def run_cases(config: GatewayConfig, cases: list[Case]) -> list[Result]:
    authenticator = ClaimsAuthenticator(config.providers)
    results = []
    for case in cases:
        outcome = await evaluate(config.routes, case.method, case.path, lambda c=case: c.claims, authenticator,
                                 config.allow_path_params)
        results.append(Result(case, outcome))
    return results


def report(config: GatewayConfig, source: str, results: list[Result], verbose: bool) -> list[str]:
    lines = [f"{source}: {len(results)} case(s) against {config.source}"]
    for result in results:
        case, outcome = result.case, result.outcome
        if result.passed and not verbose:
            continue
        where = f"{source}:{case.line}"
        route = f"route line {outcome.route.line} {outcome.route.pattern}" if outcome.route else "no route"
        if result.passed:
            lines.append(f"ok    {where}  {case.name}: {case.method} {case.path} -> {outcome.status}")
        else:
            lines.append(f"FAIL  {where}  {case.name}: {case.method} {case.path} expected {case.expect}, "
                         f"got {outcome.status} {outcome.code}: {outcome.description} [{route}]")
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return lines
