"""The operations keys of routes.yaml (`admin:`, `reload:`, provider `scopes:`) are validated like the rest."""
import pytest

from gateway.config.loader import ConfigError, load_config

BASE = """\
listen: 127.0.0.1:8080
upstream: http://127.0.0.1:5000
providers: []
routes:
  - path: /
    access: public
"""


def problems(tmp_path, extra: str, **overrides) -> list[str]:
    path = tmp_path / "routes.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as info:
        load_config(path, dotenv=None, **overrides)
    return [p.replace(str(path), "routes.yaml") for p in info.value.problems]


def test_defaults_and_explicit_values(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(BASE)
    config = load_config(path, dotenv=None)
    assert (config.admin.host, config.admin.port, config.admin.required) == ("127.0.0.1", 9901, False)
    assert (config.reload.watch, config.reload.interval) == (True, 1.0)
    path.write_text(BASE + "admin: {listen: '0.0.0.0:9100'}\nreload: {watch: false, interval: 0.5}\n")
    config = load_config(path, dotenv=None)
    assert (config.admin.host, config.admin.port, config.admin.required) == ("0.0.0.0", 9100, True)
    assert (config.reload.watch, config.reload.interval) == (False, 0.5)
    assert load_config(path, dotenv=None, admin="127.0.0.1:9200").admin.port == 9200  # --admin wins


@pytest.mark.parametrize("extra, overrides, expected", [
    ("admin: {listen: '127.0.0.1:8080'}\n", {}, "routes.yaml:7: the admin listener 127.0.0.1:8080 shares the public port"),
    ("admin: {listen: '0.0.0.0:8080'}\n", {}, "routes.yaml:7: the admin listener 0.0.0.0:8080 shares the public port"),
    ("", {"admin": "127.0.0.1:8080"}, "shares the public port"),
    ("admin: {listn: '127.0.0.1:9901'}\n", {}, "routes.yaml:7: unknown key 'listn' in admin; did you mean 'listen'?"),
    ("admin: {listen: nowhere}\n", {}, "routes.yaml:7: admin: listen address 'nowhere' must look like"),
    ("reload: {interval: 0}\n", {}, "routes.yaml:7: 'interval' in reload must be at least 0.05"),
    ("reload: {watch: 'yes'}\n", {}, "routes.yaml:7: 'watch' in reload must be true or false"),
])
def test_mistakes_are_reported_with_file_and_line(tmp_path, extra, overrides, expected):
    assert any(expected in problem for problem in problems(tmp_path, extra, **overrides))
