"""The settings around the rules (upstream, clients, limits, admin, reload): typed when right, refused with file:line
when wrong."""
from __future__ import annotations

import ipaddress
import textwrap

import pytest

from gateway.config.loader import ConfigError, load_config
from gateway.auth.token_sources import COOKIE, HEADER, QUERY, TokenSource

GOOD = """\
listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:5000
  host: upstream
clients:
  trusted_proxies: [10.0.0.0/8, "::1", 192.0.2.7]
  idle_timeout: 5
  body_timeout: 7
  drain_timeout: 3
limits:
  max_body_bytes: 1048576
  max_ws_message_bytes: 65536
providers:
  - name: dev
    issuer: http://127.0.0.1:9000/
    audience: https://api.example.test
    algorithms: [RS256]
routes:
  - path: /ws
    access: authenticated
    token_from: [header, query:access_token, cookie:session]
    methods: [GET]
  - path: /**
    access: authenticated
"""


def _load(tmp_path, text: str, **overrides):
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, dotenv=None, **overrides)


def problems(tmp_path, text: str, **overrides) -> list[str]:
    """The problems the loader reports, with the file named routes.yaml."""
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, **overrides)
    return [p.replace(str(tmp_path / "routes.yaml"), "routes.yaml") for p in info.value.problems]


def test_proxy_settings_load_typed(tmp_path):
    config = _load(tmp_path, GOOD)
    assert config.upstream.host == "upstream"
    assert config.clients.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"),
                                              ipaddress.ip_network("192.0.2.7/32"))
    assert (config.clients.idle_timeout, config.clients.body_timeout, config.clients.drain_timeout) == (5, 7, 3)
    assert (config.limits.max_body_bytes, config.limits.max_ws_message_bytes) == (1048576, 65536)
    ws, rest = config.routes.routes
    assert ws.token_from == (TokenSource(HEADER), TokenSource(QUERY, "access_token"), TokenSource(COOKIE, "session"))
    assert rest.token_from == (TokenSource(HEADER),)


@pytest.mark.parametrize("old, new, expected", [
    ("[10.0.0.0/8, \"::1\", 192.0.2.7]", "[10.0.0.0/8, 10.0.0.1/8]", ":6: trusted_proxies item '10.0.0.1/8' is not"),
    ("  idle_timeout: 5", "  idle_timout: 5", ":7: unknown key 'idle_timout' in clients; did you mean 'idle_timeout'?"),
    ("  body_timeout: 7", "  body_timeout: 0", ":8: 'body_timeout' in clients must be at least 0.1"),
    ("  host: upstream", "  host: bad host", ":4: upstream host 'bad host' must be 'pass', 'upstream' or a host"),
    ("  max_body_bytes: 1048576", "  max_body_bytes: ten", ":11: 'max_body_bytes' in limits must be a number"),
    ("query:access_token", "form:access_token",
     ":21: token_from entry 'form:access_token' must be 'header', 'query:NAME' or 'cookie:NAME'"),
    ("[header, query:access_token, cookie:session]", "[header, header]", ":21: token_from lists 'header' twice"),
    ("  - path: /**\n    access: authenticated", "  - path: /**\n    access: public\n    token_from: [header]",
     ":25: token_from has no effect on a public route"),
])
def test_proxy_setting_mistakes_are_reported_with_their_line(tmp_path, old, new, expected):
    assert GOOD.count(old) == 1
    found = problems(tmp_path, GOOD.replace(old, new))
    assert any(expected in problem for problem in found), found


# -- admin and reload (the operations side) ----------------------------------------------------------------------

OPERATIONS_BASE = """\
listen: 127.0.0.1:8080
upstream: http://127.0.0.1:5000
providers: []
routes:
  - path: /
    access: public
"""


def test_operations_defaults_and_explicit_values(tmp_path):
    config = _load(tmp_path, OPERATIONS_BASE)
    assert (config.admin.host, config.admin.port, config.admin.required) == ("127.0.0.1", 9901, False)
    assert (config.reload.watch, config.reload.interval) == (True, 1.0)
    explicit = OPERATIONS_BASE + "admin: {listen: '0.0.0.0:9100'}\nreload: {watch: false, interval: 0.5}\n"
    config = _load(tmp_path, explicit)
    assert (config.admin.host, config.admin.port, config.admin.required) == ("0.0.0.0", 9100, True)
    assert (config.reload.watch, config.reload.interval) == (False, 0.5)
    assert _load(tmp_path, explicit, admin="127.0.0.1:9200").admin.port == 9200  # --admin wins


@pytest.mark.parametrize("extra, overrides, expected", [
    ("admin: {listen: '127.0.0.1:8080'}\n", {}, "routes.yaml:7: the admin listener 127.0.0.1:8080 shares the public port"),
    ("admin: {listen: '0.0.0.0:8080'}\n", {}, "routes.yaml:7: the admin listener 0.0.0.0:8080 shares the public port"),
    ("", {"admin": "127.0.0.1:8080"}, "shares the public port"),
    ("admin: {listn: '127.0.0.1:9901'}\n", {}, "routes.yaml:7: unknown key 'listn' in admin; did you mean 'listen'?"),
    ("admin: {listen: nowhere}\n", {}, "routes.yaml:7: admin: listen address 'nowhere' must look like"),
    ("reload: {interval: 0}\n", {}, "routes.yaml:7: 'interval' in reload must be at least 0.05"),
    ("reload: {watch: 'yes'}\n", {}, "routes.yaml:7: 'watch' in reload must be true or false"),
])
def test_operations_mistakes_are_reported_with_file_and_line(tmp_path, extra, overrides, expected):
    assert any(expected in problem for problem in problems(tmp_path, OPERATIONS_BASE + extra, **overrides))
