"""The proxy settings in routes.yaml: typed when right, refused with file:line when wrong."""
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


def _load(tmp_path, text: str):
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, dotenv=None)


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
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, GOOD.replace(old, new))
    assert any(expected in problem for problem in info.value.problems), info.value.problems
