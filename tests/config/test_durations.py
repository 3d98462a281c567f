"""Issue 12 items 2(c) and 3: durations read as `30s`, `5m`, `1h` (or plain seconds) everywhere; zero timeouts refused."""
import pytest

from gateway.config.loader import ConfigError, load_config
from tests.config.test_loader_totality import EVERY_SECTION


def load(tmp_path, text):
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return load_config(path, dotenv=None)


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_every_duration_setting_reads_units_and_plain_seconds(tmp_path):
    config = load(tmp_path, EVERY_SECTION)
    dev = config.provider("dev")
    assert config.upstream.connect_timeout == 5.0  # 5s
    assert config.upstream.read_timeout == 30.0  # 30
    assert config.upstream.keepalive == 1.5
    assert config.reload.interval == 1.0  # 1s
    assert (config.clients.idle_timeout, config.clients.body_timeout, config.clients.drain_timeout) == (20, 30, 10)
    assert (dev.leeway, dev.max_lifetime) == (30.0, 3600.0)  # 30s, 1h
    policy = dev.jwks_policy
    assert (policy.min_ttl, policy.max_ttl, policy.default_ttl, policy.cooldown) == (60, 3600, 600, 30)
    assert config.routes.routes[1].cors.max_age == 600  # 10m
    compound = load(tmp_path, EVERY_SECTION.replace("max_lifetime: 1h", "max_lifetime: 1h30m")
                    .replace("      retry_min: 0.5", "      retry_min: 250ms"))
    assert compound.provider("dev").max_lifetime == 5400.0
    assert compound.provider("dev").jwks_policy.retry_min == 0.25


@pytest.mark.parametrize("text", ["1 hour", "1y", "true", "[1]", "2001-12-14", "1.0e+400", ".nan"])
def test_a_value_that_is_no_duration_names_its_line_and_the_forms(tmp_path, text):
    found = problems(tmp_path, EVERY_SECTION.replace("max_lifetime: 1h", f"max_lifetime: {text}"))
    line_number = EVERY_SECTION.splitlines().index("    max_lifetime: 1h") + 1
    assert any(f":{line_number}: 'max_lifetime' in provider 'dev' must be a" in p for p in found), found
    assert any("30s, 5m, 1h" in p or "finite number" in p for p in found), found


@pytest.mark.parametrize("key, line", [("connect_timeout", 4), ("read_timeout", 5)])
@pytest.mark.parametrize("value", ["0", "0s", "-1", "0.0"])
def test_zero_or_negative_upstream_timeouts_are_refused_with_a_hint(tmp_path, key, line, value):
    """Before: 0 loaded, the lean pool timed out at once (504) while aiohttp read 0 as 'no timeout'."""
    old = {"connect_timeout": "connect_timeout: 5s", "read_timeout": "read_timeout: 30"}[key]
    found = problems(tmp_path, EVERY_SECTION.replace(old, f"{key}: {value}"))
    assert any(f":{line}: '{key}' in upstream must be more than 0" in p and "leave it out for the default" in p
               for p in found), found
