"""A newcomer's config mistakes through the real `gateway` command: one message a mistake, each naming its fix."""
import subprocess
from pathlib import Path

import pytest

from gateway.config.loader import ConfigError, load_config
from tests.e2e.console import GATEWAY, gateway
from tests.support.processes import free_port, start_process, stop_process, wait_http

HEAD = """\
listen: 127.0.0.1:8080
upstream: http://127.0.0.1:5000
providers:
  - name: main
    issuer: https://issuer.test/
    audience: https://api.example.test
    jwks_uri: https://127.0.0.1:1/jwks.json
routes:
"""


def check(tmp_path: Path, routes: str, head: str = HEAD) -> subprocess.CompletedProcess:
    path = tmp_path / "routes.yaml"
    path.write_text(head + routes)
    return gateway("check", "--offline", "--config", str(path))


def test_check_and_explain_show_claim_conditions_whole(tmp_path):
    """Item 5: the rule table and explain show each condition with its value; the 403 is grammatical."""
    done = check(tmp_path, """\
  - path: /reports
    access:
      claims:
        "[https://example.com/roles]": analyst
        tier: {one_of: [gold, silver]}
        groups: {all_of: [a, b]}
        banned: {present: false}
""")
    assert done.returncode == 0, done.stderr
    assert ("claim [https://example.com/roles] must equal 'analyst'; claim tier must include one of 'gold', 'silver'; "
            "claim groups must include all of 'a', 'b'; claim banned must not be present") in done.stdout
    explained = gateway("explain", "--config", str(tmp_path / "routes.yaml"), "GET", "/reports",
                        "--claims", '{"sub": "ann", "iss": "https://issuer.test/", "https://example.com/roles": ["viewer"]}')
    assert explained.returncode == 0, explained.stderr
    assert "rule      claim [https://example.com/roles] must equal 'analyst'; claim tier" in explained.stdout
    assert ("decision  403 insufficient_scope: claim [https://example.com/roles] must equal 'analyst'"
            in explained.stdout)


def test_url_shaped_claim_name_without_brackets_is_an_error(tmp_path):
    """Item 6: read as [https://example].[com/roles] it would 403 every token; check exits 2 with the fix."""
    done = check(tmp_path, """\
  - path: /reports
    access:
      claims:
        https://example.com/roles: analyst
""")
    assert done.returncode == 2
    assert (f"{tmp_path}/routes.yaml:12: claim path 'https://example.com/roles' would be read as the nested names "
            "'https://example' > 'com/roles', a URL split at its dots; a claim named by a URL is written in square "
            "brackets: '[https://example.com/roles]'") in done.stderr


def test_indentation_slips_and_one_error_per_mistake(tmp_path):
    """Items 9 and 10 in one file: each mistake gives exactly one message, saying where the key belongs or the
    corrected spelling; no false 'can never match' follows from `methods: POST`."""
    done = check(tmp_path, """\
  - path: /orders
    access:
    scopes: [write:orders]
  - path: /reports
    access: authenticated
    claims: {role: analyst}
  - path: /orders
    methods: POST
    access: authenticated
  - path: /items
    access:
      scopes: write:orders
  - path: /things
    access:
      scopes: [read:things]
      methods: [GET]
""")
    source = f"{tmp_path}/routes.yaml"
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{source}:11: 'scopes' belongs under 'access:' (line 10), not in route; check its indentation",
        f"{source}:14: 'claims' belongs under 'access:' (line 13), not in route; check its indentation",
        f"{source}:16: 'methods' in route must be a list, not a string: write methods: [POST]",
        f"{source}:20: 'scopes' in access must be a list, not a string: write scopes: [write:orders]",
        f"{source}:24: 'methods' belongs to the route (line 21), not in access; check its indentation",
        "5 problem(s); the gateway does not start on an invalid config",
    ]


def test_top_level_keys_that_belong_to_a_route_or_provider(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(HEAD + "  - path: /\n    access: public\npath: /x\naudience: y\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, dotenv=None)
    assert caught.value.problems == [
        f"{path}:11: 'path' belongs to a route under 'routes:', not in the top level; check its indentation",
        f"{path}:12: 'audience' belongs to a provider under 'providers:', not in the top level; check its indentation",
    ]


@pytest.mark.parametrize("text, line, sentence", [
    ("  - path: /a\n    access:\n      scopes: [a]\n        claims: {x: 1}\n", 12,
     "this line is indented deeper than the keys above it: line it up with them"),
    ("  - path: /a\n      access: public\n", 10,
     "a 'key:' where none can be: this line is indented deeper than the key above it (line them up)"),
    ("  - path: /a\n    access: public\n - path: /b\n", 11,
     "this list item ('- ') is not lined up with the items above it"),
    ("\t- path: /a\n", 9, "a tab indents this line, and YAML indents with spaces only: replace the tab with spaces"),
    ("  - path: \"/a\n    access: public\n", 9, "a quote opened on this line is never closed"),
    ("  - path: /a\n    methods: [GET, POST\n    access: public\n", 10, "a '[' opened on this line is not closed"),
    ("  - path: /a\n    access: public\n    methods: *\n", 11, "'*' starts a YAML alias: write the value in quotes"),
])
def test_yaml_errors_are_one_sentence_with_the_fix(tmp_path, text, line, sentence):
    """Item 9: PyYAML's common complaints, translated; its own words stay in parentheses."""
    path = tmp_path / "routes.yaml"
    path.write_text(HEAD + text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, dotenv=None)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:{line}: not valid YAML: {sentence}")
    assert "(YAML: " in problem


def test_yaml_error_through_check(tmp_path):
    done = check(tmp_path, "  - path: /a\n      access: public\n")
    assert done.returncode == 2
    assert f"{tmp_path}/routes.yaml:10: not valid YAML: a 'key:' where none can be" in done.stderr


@pytest.fixture(scope="module")
def issuers(tmp_path_factory):
    """Two real development issuers: one whose discovery names `http://127.0.0.1:P` (no slash), one `localhost`."""
    tmp_path = tmp_path_factory.mktemp("issuers")
    keys = tmp_path / "keys"
    processes, urls = [], {}
    try:
        for name, template in (("no-slash", "http://127.0.0.1:{}"), ("localhost", "http://localhost:{}/")):
            port = free_port()
            processes.append(start_process([GATEWAY, "devissuer", "--listen", f"127.0.0.1:{port}", "--key-dir",
                                            str(keys), "--issuer", template.format(port)], tmp_path / f"{name}.log"))
            wait_http(f"http://127.0.0.1:{port}/.well-known/jwks.json", process=processes[-1])
            urls[name] = port
        yield urls, keys
    finally:
        for process in processes:
            stop_process(process)


def provider_config(tmp_path: Path, issuer: str, jwks_uri: str = "") -> Path:
    path = tmp_path / f"routes-{abs(hash((issuer, jwks_uri)))}.yaml"
    path.write_text(f"""\
upstream: http://127.0.0.1:5000
providers:
  - name: dev
    issuer: {issuer}
    audience: https://api.example.test
{f'    jwks_uri: {jwks_uri}' if jwks_uri else ''}
routes:
  - path: /user
    access: authenticated
""")
    return path


def test_discovery_issuer_mismatch_is_an_error_and_names_the_difference(tmp_path, issuers):
    """Item 7: check exits 2; 'trailing slash' only when the slash is the difference (not localhost/127.0.0.1)."""
    ports, _ = issuers
    slash = gateway("check", "--config", str(provider_config(tmp_path, f"http://127.0.0.1:{ports['no-slash']}/")))
    assert slash.returncode == 2, slash.stdout
    assert (f"names issuer 'http://127.0.0.1:{ports['no-slash']}', not the configured "
            f"'http://127.0.0.1:{ports['no-slash']}/'; the trailing slash is the difference: write issuer: "
            f"http://127.0.0.1:{ports['no-slash']}") in slash.stderr
    host = gateway("check", "--config", str(provider_config(tmp_path, f"http://127.0.0.1:{ports['localhost']}/")))
    assert host.returncode == 2, host.stdout
    assert f"names issuer 'http://localhost:{ports['localhost']}/'" in host.stderr
    assert "slash" not in host.stderr
    assert f"write issuer: http://localhost:{ports['localhost']}/ if that is the provider you mean" in host.stderr


def test_explain_token_shows_its_iss_beside_the_routes_issuers(tmp_path, issuers):
    """Item 7 (explain part): a token minted for localhost, a route configured for 127.0.0.1."""
    ports, keys = issuers
    port = ports["localhost"]
    config = provider_config(tmp_path, f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/.well-known/jwks.json")
    minted = gateway("token", "--key-dir", str(keys), "--issuer", f"http://localhost:{port}/")
    assert minted.returncode == 0, minted.stderr
    explained = gateway("explain", "--config", str(config), "GET", "/user", "--token", minted.stdout.strip())
    assert explained.returncode == 0, explained.stderr
    assert (f"issuer    token iss 'http://localhost:{port}/'; this route accepts 'http://127.0.0.1:{port}/' (dev); "
            f"no match: write issuer: http://localhost:{port}/ if that is the provider you mean") in explained.stdout
    assert "decision  401 invalid_claims: " in explained.stdout


def test_a_same_pattern_route_is_called_earlier_not_broader(tmp_path):
    """Item 12: the route that takes some methods first has the very same pattern: it is not 'broader'."""
    done = check(tmp_path, """\
  - path: /docs
    methods: [GET]
    access: public
  - path: /docs
    access: authenticated
""")
    assert done.returncode == 0, done.stderr
    assert (f"{tmp_path}/routes.yaml:12: warning: GET,HEAD requests to '/docs' are answered by the earlier public "
            "route '/docs' at line 9 without a token, not by this route") in done.stdout
