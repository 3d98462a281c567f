"""Issue 12 item 2: the loader is total. Any YAML value anywhere loads or is a ConfigError with file:line.

A valid config with every section present has each of its values replaced, one at a time, by each YAML
type; the only acceptable outcomes are a config or a ConfigError whose every problem names a line.
"""
from __future__ import annotations

import json
import re

import pytest
import trustme
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.lint import load_checked
from gateway.config.loader import ConfigError, build_config, load_config
from gateway.config.loader.load import TOP_KEYS
from gateway.config.model import GatewayConfig
from gateway.config.yaml_source import load_located
from tests.support.config import REPO
from tests.support.keys import SigningKey

STATIC_KEY = SigningKey.rsa("static-1")

# config/routes.yaml grown to hold every section and every key the loader reads
EVERY_SECTION = f"""\
listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:5000
  connect_timeout: 5s
  read_timeout: 30
  pool_size: 10
  keepalive: 1.5
  host: pass
realm: api
forward_authorization: false
allow_path_params: false
limits:
  max_token_bytes: 8192
  max_field_size: 16384
  max_line_size: 8190
  max_headers: 100
  token_cache_entries: 1000
  max_body_bytes: 1048576
  max_ws_message_bytes: 65536
cors:
  allow_origins: [https://app.example.com]
  allow_methods: [GET, POST]
  allow_headers: [Authorization, Content-Type]
  expose_headers: [X-Request-Id]
  allow_credentials: true
  max_age: 10m
admin:
  listen: 127.0.0.1:9901
reload:
  watch: true
  interval: 1s
clients:
  trusted_proxies: [10.0.0.0/8]
  idle_timeout: 20s
  body_timeout: 30
  drain_timeout: 10
public_url: https://api.example.test
dpop:
  replay_store: memory
  replay_entries: 10000
  max_proof_bytes: 4096
  nonce_secret: {"s" * 40}
  nonce_lifetime: 5m
providers:
  - name: dev
    issuer: http://127.0.0.1:9000/
    audience: [https://api.example.test]
    jwks_uri: http://127.0.0.1:9000/.well-known/jwks.json
    algorithms: [RS256, ES256]
    leeway: 30s
    scope_claims: [scope, scp]
    max_lifetime: 1h
    required_claims: [sub]
    typ: at+jwt
    scopes: [read:user, read:admin]
    forward_claims:
      X-User-Email: email
    token_binding: optional
    dpop:
      algorithms: [ES256, RS256]
      max_age: 60
      nonce: true
    jwks_cache:
      min_ttl: 1m
      max_ttl: 1h
      default_ttl: 10m
      cooldown: 30s
      timeout: 5
      max_bytes: 524288
      retry_min: 0.5
      retry_max: 60
  - name: static
    issuer: https://static.example.test/
    audience: https://api.example.test
    jwks: {json.dumps({"keys": [STATIC_KEY.public_jwk]})}
routes:
  - path: /
    methods: [GET]
    access: public
  - path: /user
    access: authenticated
    providers: [dev]
    token_from: [header, query:access_token]
    cors: true
    streams_outlive_token: false
  - path: /session
    methods: [GET, POST]
    token_from: [cookie:session]
    csrf_origins: [https://app.example.com]
    access: authenticated
  - path: /admin/**
    access:
      scopes: [read:admin]
      any_scopes: [read:admin, write:admin]
      providers: [dev, static]
      claims:
        org: acme
        email_verified: {{equals: true}}
        roles: {{one_of: [admin, owner]}}
        groups: {{all_of: [staff]}}
        sub: {{present: true}}
      any_of:
        - authenticated
        - {{scopes: [write:admin]}}
      all_of:
        - {{claims: {{tenant: {{present: true}}}}}}
"""

# each YAML type the issue names, written as YAML, plus the shapes users actually type wrongly
REPLACEMENTS = ("text", "7", "2.5", ".nan", ".inf", "1" * 40, "true", "null", "[1]", "{a: 1}",  # the issue's ten
                "0", "1h", "9" * 400, "2001-12-14")
PROBLEM = re.compile(r"^\S+:\d+: \S")
SOURCE = "routes.yaml"


def yaml_value(text: str):
    """A value as the loader reads it (LocatedList/LocatedMap where it is a container)."""
    return load_located(f"value: {text}", {})["value"]


def value_slots(node):
    """(container, key) of every value in the document: mapping values and list items, containers included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in list(items):
        yield node, key
        yield from value_slots(child)


def loads_or_refuses_with_lines(load) -> GatewayConfig | ConfigError:
    """Load and lint as `check`, `serve` and reload do; anything but a config or a ConfigError fails the test."""
    try:
        config, _ = load_checked(load)
        return config
    except ConfigError as exc:
        assert exc.problems and all(PROBLEM.match(p) for p in exc.problems), exc.problems
        return exc


DOCUMENT = load_located(EVERY_SECTION, {})
SLOTS = list(value_slots(DOCUMENT))


def build_with(slot: tuple, value) -> GatewayConfig | ConfigError:
    """The fixture with one value replaced (in place, restored after): built and linted."""
    container, key = slot
    original = container[key]
    container[key] = value
    try:
        return loads_or_refuses_with_lines(lambda: build_config(DOCUMENT, SOURCE, REPO))
    finally:
        container[key] = original


def where(slot: tuple) -> str:
    container, key = slot
    line = container.key_lines[key] if isinstance(container, dict) else container.item_lines[key]
    return f"line {line} ({key!r})"


def test_the_fixture_itself_loads_with_every_section(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(EVERY_SECTION)
    assert isinstance(loads_or_refuses_with_lines(lambda: load_config(path, dotenv=None)), GatewayConfig)
    assert set(DOCUMENT) | {"tls"} == set(TOP_KEYS)  # tls needs certificate files: swept on its own below


def test_every_value_replaced_by_every_yaml_type_loads_or_names_a_line():
    """Exhaustive over (value, type): about two thousand configs, each built and linted (a few seconds)."""
    for slot in SLOTS:
        for text in REPLACEMENTS:
            try:
                build_with(slot, yaml_value(text))
            except Exception as exc:
                raise AssertionError(f"{where(slot)} = {text[:20]}: {exc.__class__.__name__}: {exc}") from exc


yaml_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12) | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
).map(lambda value: yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("\n...\n").strip())


@settings(max_examples=200, deadline=None)
@given(slot=st.sampled_from(SLOTS), text=st.sampled_from(("-5", "-.inf", "1.0e+400", "[]", "{}", "'30s'")) | yaml_texts)
def test_any_yaml_value_anywhere_loads_or_names_a_line(slot, text):
    build_with(slot, yaml_value(text))


@pytest.mark.parametrize("line", ["max_lifetime: 1h", "max_lifetime: true", "max_lifetime: .nan",
                                  "max_lifetime: 1.0e+400", "max_lifetime: [1]", "max_lifetime: 2001-12-14"])
def test_issue_examples_are_a_config_or_a_config_error(tmp_path, line):
    path = tmp_path / "routes.yaml"
    path.write_text(EVERY_SECTION.replace("max_lifetime: 1h", line))
    outcome = loads_or_refuses_with_lines(lambda: load_config(path, dotenv=None))
    if isinstance(outcome, ConfigError):
        line_number = EVERY_SECTION.splitlines().index("    max_lifetime: 1h") + 1
        assert any(f":{line_number}: 'max_lifetime'" in p for p in outcome.problems), outcome.problems


def test_a_400_digit_number_is_a_config_error_with_its_line(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(EVERY_SECTION.replace("max_token_bytes: 8192", "max_token_bytes: " + "9" * 400))
    with pytest.raises(ConfigError) as info:
        load_config(path, dotenv=None)
    assert any(":13: 'max_token_bytes' in limits is far too large" in p for p in info.value.problems), info.value.problems


TLS_UPSTREAM = EVERY_SECTION.replace("  url: http://127.0.0.1:5000\n", "  url: https://127.0.0.1:5000\n"
                                     "  server_name: api.internal\n  ca_file: ca.pem\n")


@pytest.mark.parametrize("key", ["url", "server_name", "ca_file"])
def test_upstream_tls_settings_of_any_yaml_type_load_or_name_a_line(tmp_path, key):
    """The TLS keys build an SSLContext per load (too slow for the exhaustive test): their own, smaller sweep."""
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    sweep_one_key(tmp_path / "routes.yaml", TLS_UPSTREAM, key)


def sweep_one_key(path, text: str, key: str) -> None:
    """`text` loads from `path`; so does each REPLACEMENT in place of `key`'s value, or it names a line."""
    path.write_text(text)
    assert isinstance(loads_or_refuses_with_lines(lambda: load_config(path, dotenv=None)), GatewayConfig)
    line = next(written for written in text.splitlines() if written.startswith(f"  {key}: "))
    for replacement in REPLACEMENTS:
        path.write_text(text.replace(line, f"  {key}: {replacement}"))
        loads_or_refuses_with_lines(lambda: load_config(path, dotenv=None))


TLS_LISTENER = EVERY_SECTION + """\
tls:
  cert_file: cert.pem
  key_file: key.pem
  client_ca_file: ca.pem
  client_certs: optional
  min_version: TLSv1.2
"""


@pytest.mark.parametrize("key", ["cert_file", "key_file", "client_ca_file", "client_certs", "min_version"])
def test_tls_listener_settings_of_any_yaml_type_load_or_name_a_line(tmp_path, key):
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf = ca.issue_cert("localhost")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    sweep_one_key(tmp_path / "routes.yaml", TLS_LISTENER, key)
