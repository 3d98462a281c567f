"""routes.yaml validation: every class of mistake is reported with file:line, and `check` exits 2."""
import subprocess
import sys
import textwrap

import pytest

from gateway.auth import requirements
from gateway.config.loader import ConfigError, load_config
from tests.support.config import DEFAULT_ROUTES, REPO

GOOD = """\
listen: 127.0.0.1:8080
upstream: http://127.0.0.1:5000
providers:
  - name: dev
    issuer: http://127.0.0.1:9000/
    audience: https://api.example.test
    jwks_uri: http://127.0.0.1:9000/.well-known/jwks.json
    algorithms: [RS256]
routes:
""" + DEFAULT_ROUTES


def write(tmp_path, text, name="routes.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text, **env):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), dotenv=None)
    return info.value.problems


def test_good_config_loads_typed_and_immutable(tmp_path):
    config = load_config(write(tmp_path, GOOD), dotenv=None)
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8080)
    admin = config.routes.routes[2]
    assert isinstance(admin.access, requirements.Requirement)
    assert admin.access.scopes == frozenset({"read:admin"})
    assert config.routes.routes[0].methods == frozenset({"GET", "HEAD"})
    with pytest.raises(AttributeError):
        config.realm = "x"


@pytest.mark.parametrize("mutation, expected", [
    (("    access: authenticated", "    acess: authenticated"), ":14: unknown key 'acess' in route; did you mean 'access'?"),
    (("    access: authenticated", "    access: authenticatd"), ":14: access 'authenticatd' is not one of"),
    (("      scopes: [read:admin]", "      scopes: read:admin"), ":17: 'scopes' in access must be a list"),
    (("upstream: http://127.0.0.1:5000", "upstream: ftp://x"), ":2: upstream 'ftp://x' must be an http:// URL"),
    (("    jwks_uri: http://127.0.0.1:9000/.well-known/jwks.json", "    jwks_uri: not a url"), ":7: jwks_uri 'not a url'"),
    (("    algorithms: [RS256]", "    algorithms: [HS256]"), ":8: algorithm 'HS256' is not accepted"),
    (("    algorithms: [RS256]", "    algorithms: [none]"), ":8: algorithm 'none' is not accepted"),
    (("  - path: /user\n", "  - path: user\n"), ":13: path 'user': a path pattern must start with '/'"),
    (("    methods: [GET]", "    methods: [FETCH]"), ":11: unknown HTTP method(s) FETCH"),
    (("listen: 127.0.0.1:8080", "listen: 8080"), ":1: 'listen' in the top level must be a string"),
    (("listen: 127.0.0.1:8080", "listen: localhost"), ":1: listen address 'localhost' must look like"),
    (("    audience: https://api.example.test\n", ""), "needs 'audience'"),
    (("  - path: /admin\n", "  - path: /user\n"), ":15: route '/user' can never match: the earlier route '/user' at line 13"),
    (("routes:", "routes:\n  - path: /x\n    access: public\n    access: authenticated"), ":12: duplicate key 'access'"),
    (("    access: authenticated", "    access: authenticated\n    lol: 1"), "unknown key 'lol'"),
    (("listen: 127.0.0.1:8080", "listen: [unclosed"), "not valid YAML"),
    (("listen: 127.0.0.1:8080", "listen: ${NOT_SET_ANYWHERE_X}"), ":1: environment variable NOT_SET_ANYWHERE_X is not set"),
    # found in review: each of these used to loosen a rule or crash instead of failing with its line
    (("    algorithms: [RS256]", "    algorithms: [RS256]\n    leeway: .inf"), ":9: 'leeway' in provider 'dev' must be a finite number"),
    (("    algorithms: [RS256]", "    algorithms: [RS256]\n    leeway: 3600"), ":9: 'leeway' in provider 'dev' must be between 0 and 300"),
    (("    algorithms: [RS256]", "    algorithms: [RS256]\n    max_lifetime: -5"), ":9: 'max_lifetime' in provider 'dev' must be at least 1"),
    (("    algorithms: [RS256]", "    algorithms: [RS256]\n    jwks_cache: {cooldown: 0}"), ":9: 'cooldown' in provider 'dev' jwks_cache must be between"),
    (("    algorithms: [RS256]", "    algorithms: [RS256]\n    jwks_cache: 5"), ":9: provider 'dev' jwks_cache must be a mapping"),
    (("    algorithms: [RS256]", "    algorithms: [RS256]\n    forward_claims: {X_User_Email: email}"), ":9: forward_claims: 'X_User_Email' contains '_'"),
    (("    algorithms: [RS256]", "    algorithms: [RS256]\n    forward_claims: {x-auth-subject: email}"), ":9: forward_claims: 'x-auth-subject' is reserved"),
    (("    algorithms: [RS256]", "    algorithms: []"), ":8: provider 'dev': algorithms must list at least one"),
    (("    issuer: http://127.0.0.1:9000/", "    issuer: ''"), ":5: provider 'dev': issuer must not be empty"),
    (("      scopes: [read:admin]", "      scopes: []"), ":17: scopes is empty, which would allow any valid token"),
    (("      scopes: [read:admin]", "      claims: {}"), ":17: claims is empty, which would allow any valid token"),
    (("      scopes: [read:admin]", "      scopes: [read:admin write:admin]"), ":17: scope 'read:admin write:admin' contains whitespace"),
    (("listen: 127.0.0.1:8080", "listen: 127.0.0.1:8080\nrealm: 5"), ":2: 'realm' in the top level must be a string"),
    (("listen: 127.0.0.1:8080", "listen: 127.0.0.1:8080\nforward_authorization: 'true'"), ":2: 'forward_authorization' in the top level must be true or false"),
    (("    jwks_uri: http://127.0.0.1:9000/.well-known/jwks.json", "    jwks: {keys: [{kty: oct, k: c2VjcmV0}]}"), ":7: provider 'dev': no usable signing key in the static JWKS"),
])
def test_each_mistake_is_reported_with_its_line(tmp_path, mutation, expected):
    old, new = mutation
    assert old in GOOD
    found = problems(tmp_path, GOOD.replace(old, new, 1))
    assert any(expected in p for p in found), found
    assert all(p.startswith(str(tmp_path)) for p in found)


def test_route_without_access_is_an_error_not_public(tmp_path):
    found = problems(tmp_path, GOOD.replace("    access: authenticated\n", "", 1))
    assert any(":13: route needs 'access'" in p for p in found), found


def test_empty_provider_list_while_a_route_needs_tokens(tmp_path):
    text = "upstream: http://127.0.0.1:5000\nproviders: []\nroutes:\n  - path: /u\n    access: authenticated\n"
    found = problems(tmp_path, text)
    assert any("needs tokens but no provider is configured" in p for p in found), found


def test_every_problem_is_listed_not_just_the_first(tmp_path):
    text = GOOD.replace("acces", "x").replace("    access: authenticated", "    acess: authenticated") \
        .replace("methods: [GET]", "methods: [FETCH]")
    assert len(problems(tmp_path, text)) >= 2


def test_environment_expansion_and_dotenv(tmp_path, monkeypatch):
    text = GOOD.replace("listen: 127.0.0.1:8080", "listen: ${LISTEN_AT}") \
        .replace("upstream: http://127.0.0.1:5000", "upstream: ${UP:-http://127.0.0.1:6000}")
    (tmp_path / ".env").write_text("# comment\nexport LISTEN_AT=127.0.0.1:7777\n")
    config = load_config(write(tmp_path, text), dotenv=tmp_path / ".env")
    assert config.listen_port == 7777 and config.upstream.url == "http://127.0.0.1:6000"
    monkeypatch.setenv("LISTEN_AT", "127.0.0.1:7778")
    config = load_config(write(tmp_path, text), dotenv=tmp_path / ".env")
    assert config.listen_port == 7778  # the real environment wins over .env


def test_overrides_beat_the_file(tmp_path):
    config = load_config(write(tmp_path, GOOD), listen="0.0.0.0:9999", upstream="http://10.0.0.1:80", dotenv=None)
    assert (config.listen_host, config.listen_port, config.upstream.url) == ("0.0.0.0", 9999, "http://10.0.0.1:80")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env)


def test_check_command_exit_codes(tmp_path):
    good = run_cli("check", "--config", str(write(tmp_path, GOOD)))
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout and "/admin" in good.stdout
    bad = run_cli("check", "--config", str(write(tmp_path, GOOD.replace("access: public", "acess: public"), "bad.yaml")))
    assert bad.returncode == 2
    assert "bad.yaml:12: unknown key 'acess'" in bad.stderr
    missing = run_cli("check", "--config", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "cannot read the config file" in missing.stderr


def test_shipped_routes_yaml_is_valid():
    result = run_cli("check", "--config", "config/routes.yaml")
    assert result.returncode == 0, result.stderr


def test_keys_over_plain_http_are_a_warning():
    result = run_cli("check", "--offline", "--config", "config/routes.yaml")
    assert result.returncode == 0
    assert "config/routes.yaml:7: warning: provider 'dev' fetches its signing keys over plain http" in result.stdout
