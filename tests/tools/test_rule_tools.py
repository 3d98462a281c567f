"""The rule tools `check` (lints and table), `explain` and `test`: outputs and exit codes, through the real command
line (the lints themselves: tests/config/test_lint.py)."""
import asyncio
import subprocess
import sys

import pytest

from gateway.cli import main
from tests.support.config import REPO
from tests.support.keys import ISSUER, claims

BASE = f"""\
listen: 127.0.0.1:8080
upstream: http://127.0.0.1:5000
providers:
  - name: main
    issuer: {ISSUER}
    audience: https://api.example.test
    jwks_uri: https://127.0.0.1:1/jwks.json  # https: no plain-http lint in these tables
routes:
"""


def write(tmp_path, routes: str, name="routes.yaml", base=BASE):
    path = tmp_path / name
    path.write_text(base + routes)
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_refuses_a_public_route_shadowing_a_protected_one(tmp_path, capsys):
    path = write(tmp_path, """\
  - path: /admin/**
    access: public
  - path: /admin/secrets
    access:
      scopes: [read:admin]
""")
    code, out, err = run(capsys, "check", "--config", str(path), "--offline")
    assert code == 2 and out == ""
    assert f"{path}:11: protected route '/admin/secrets' is shadowed by the broader public route '/admin/**' " \
           "at line 9" in err


def test_check_prints_warnings_and_the_effective_rules(tmp_path, capsys):
    path = write(tmp_path, """\
  - path: /docs/**
    methods: [GET]
    access: public
  - path: /docs/drafts
    access: authenticated
  - path: /ops
    access:
      any_of:
        - scopes: [ops:read]
        - claims: {role: operator}
""")
    code, out, err = run(capsys, "check", "--config", str(path), "--offline")
    assert code == 0, err
    assert out.startswith(f"{path}: OK, 1 provider(s), 3 route(s), 1 warning(s)\n")
    assert f"  {path}:12: warning: GET,HEAD requests to '/docs/drafts' are answered by the broader public " \
           "route '/docs/**' at line 9 without a token, not by this route" in out
    table = out.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["LINE", "METHODS", "PATH", "TOKEN", "RULE", "PROVIDERS", "NOTES"]
    assert table[1].split()[:5] == ["9", "GET,HEAD", "/docs/**", "public", "public"]
    assert table[2].split()[:4] == ["12", "*", "/docs/drafts", "required"] and "GET,HEAD taken by line 9" in table[2]
    assert "any of (scopes ops:read | claim role must equal 'operator')" in table[3]
    assert table[4].split()[:3] == ["-", "*", "(anything"] and "404 not_found" in table[4]
    assert run(capsys, "check", "--config", str(path), "--offline", "--strict")[0] == 1


def test_check_warns_about_an_unreachable_provider(tmp_path, capsys):
    path = write(tmp_path, "  - path: /user\n    access: authenticated\n")
    code, out, _ = run(capsys, "check", "--config", str(path))
    assert code == 0
    assert f"{path}:4: warning: provider 'main': keys could not be fetched (cannot reach " \
           "https://127.0.0.1:1/jwks.json" in out


def test_explain_names_route_rule_and_missing_scopes(capsys):
    code, out, _ = run(capsys, "explain", "--config", "config/routes.yaml", "GET", "/admin",
                       "--claims", '{"sub": "alice", "scope": "read:user"}')
    assert code == 0
    assert out.splitlines() == [
        "request   GET /admin",
        "path      /admin  (canonical: the route is chosen by it, the upstream gets it)",
        "route     config/routes.yaml:19  /admin  (any method; any provider)",
        "rule      scopes read:admin: a valid token is required",
        "token     claims taken as verified: provider 'dev', sub 'alice', scopes read:user",
        "decision  403 insufficient_scope: missing scope read:admin",
    ]


@pytest.mark.parametrize("argv, last_line", [
    (["GET", "/"], "decision  200 allowed: the request would be forwarded to the upstream"),
    (["GET", "/user"], "decision  401 authorization_header_missing: Authorization header is expected: "
                       "send 'Authorization: Bearer <token>'"),
    (["DELETE", "/"], "decision  405 method_not_allowed: this route does not accept that method"),
    (["GET", "/nope"], "decision  404 not_found: no route matches this path; routes are listed in routes.yaml"),
    (["GET", "/user/%2e%2e/admin"], "decision  400 invalid_path: '.' and '..' path segments are refused: "
                                    "send the resolved path"),
    (["GET", "/admin", "--claims", '{"scope": "read:admin"}'], "decision  200 allowed: the request would be "
                                                                "forwarded to the upstream"),
    (["GET", "/admin", "--claims", '{"scp": ["read:admin"]}'], "decision  403 insufficient_scope: missing scope "
                                                               "read:admin"),  # scope_claims defaults to [scope]
    (["GET", "/user", "--claims", '{"iss": "https://evil.test/"}'], "decision  401 invalid_claims: token issuer "
                                                                     "is not one this gateway trusts"),
])
def test_explain_decisions(capsys, argv, last_line):
    code, out, _ = run(capsys, "explain", "--config", "config/routes.yaml", *argv)
    assert code == 0
    assert out.splitlines()[-1] == last_line


def test_explain_usage_errors_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, "explain", "--config", "config/routes.yaml", "GET", "/", "--claims", "[1]")
    assert code == 2 and "--claims must be a JSON object" in err
    broken = write(tmp_path, "  - path: /x\n    acess: public\n")
    code, _, err = run(capsys, "explain", "--config", str(broken), "GET", "/x")
    assert code == 2 and f"{broken}:10: unknown key 'acess'" in err


async def test_explain_verifies_a_real_token_against_the_providers_keys(tmp_path, provider, rsa_key):
    """--token fetches the provider's JWKS over HTTP and runs the real verifier: problems are named."""
    path = write(tmp_path, "  - path: /admin\n    access:\n      scopes: [read:admin]\n",
                 base=BASE.replace("https://127.0.0.1:1/jwks.json", provider.jwks_uri))

    async def explain(token: str) -> tuple[int, list[str]]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "explain", "--config", str(path), "GET", "/admin", "--token", token,
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        return process.returncode, out.decode().splitlines()

    code, lines = await explain(rsa_key.sign(claims("read:admin", sub="root")))
    assert code == 0
    assert lines[-2:] == ["token     verified: provider 'main', sub 'root', scopes read:admin",
                          "decision  200 allowed: the request would be forwarded to the upstream"]
    assert provider.fetches >= 1
    code, lines = await explain(rsa_key.sign(claims("read:admin", ttl=-600)))
    assert lines[-2:] == ["token     rejected: token_expired", "decision  401 token_expired: token is expired"]
    code, lines = await explain("not-a-jwt")
    assert lines[-1].startswith("decision  401 invalid_header: token is not a JWT")


def test_shipped_rule_tests_pass(capsys):
    code, out, _ = run(capsys, "test", "--config", "config/routes.yaml", "config/routes.test.yaml")
    assert code == 0
    assert out.splitlines()[-1].endswith(" passed, 0 failed")


def test_failing_cases_are_reported_like_a_test_runner(tmp_path):
    cases = tmp_path / "cases.yaml"
    cases.write_text("""\
- {name: admin needs read:admin, method: GET, path: /admin, claims: {sub: alice, scope: "read:user"}, expect: 403}
- {method: GET, path: /, expect: 200}
- {name: wrong on purpose, method: GET, path: /admin, claims: {sub: bob, scope: "read:admin"}, expect: 403}
""")
    result = subprocess.run([sys.executable, "-m", "gateway", "test", "--config", "config/routes.yaml", str(cases)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{cases}: 3 case(s) against config/routes.yaml",
        f"FAIL  {cases}:3  wrong on purpose: GET /admin expected 403, got 200 allowed: the request would be "
        "forwarded to the upstream [route line 19 /admin]",
        "2 passed, 1 failed",
    ]


def test_invalid_tests_file_exits_2_with_file_line(tmp_path, capsys):
    cases = tmp_path / "cases.yaml"
    cases.write_text("- {method: GET, path: /, expect: 200}\n- method: GET\n  path: /\n  expected: 200\n")
    code, _, err = run(capsys, "test", "--config", "config/routes.yaml", str(cases))
    assert code == 2
    assert f"{cases}:4: unknown key 'expected' in a test case; did you mean 'expect'?" in err
    assert f"{cases}:2: a test case needs 'expect'" in err
