"""The tls: section and token_binding: every bad file or setting named with its line; flags and env override."""
from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys

import pytest

from gateway.config.lint import load_checked
from gateway.config.loader import ConfigError, load_config
from gateway.tools.devcerts import issue, write_pair
from tests.support.config import REPO, config_text, provider_yaml
from tests.support.gateway import running_gateway

PROVIDER = provider_yaml("http://127.0.0.1:9/jwks.json")
ROUTES = "  - path: /**\n    access: authenticated\n"


def write_config(folder, tls: str, provider: str = PROVIDER):
    path = folder / "routes.yaml"
    path.write_text(config_text("http://127.0.0.1:5000", provider, ROUTES, tls))
    return path


def line_of(path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def problems(path, **overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, dotenv=None, **overrides)
    return info.value.problems


TLS = "tls:\n  cert_file: server.pem\n  key_file: server-key.pem\n"


def test_a_good_section_loads_typed(certs):
    path = write_config(certs.folder, TLS + "  client_ca_file: ca.pem\n  client_certs: required\n"
                                           "  min_version: TLSv1.3\n")
    tls = load_config(path, dotenv=None).tls
    assert (tls.cert_file, tls.client_ca_file) == (str(certs.folder / "server.pem"), str(certs.folder / "ca.pem"))
    assert (tls.client_certs, tls.min_version) == ("required", "TLSv1.3")
    assert tls.not_after == certs.server.certificate.not_valid_after_utc.timestamp()
    assert load_config(write_config(certs.folder, ""), dotenv=None).tls is None


@pytest.mark.parametrize("damage, key, expected", [
    (lambda f: (f / "server.pem").unlink(), "cert_file", "cannot read cert_file"),
    (lambda f: (f / "server.pem").write_text("hello\n"), "cert_file", "holds no PEM certificate"),
    (lambda f: (f / "server-key.pem").write_text("hello\n"), "key_file", "holds no PEM private key"),
    (lambda f: (f / "server-key.pem").write_bytes((f / "client-key.pem").read_bytes()), "key_file",
     "does not match the certificate"),
])
def test_each_bad_file_is_an_error_with_its_line(certs, damage, key, expected):
    certs.client_files(certs.client, "client")
    damage(certs.folder)
    path = write_config(certs.folder, TLS)
    [problem] = problems(path)
    assert problem.startswith(f"{path}:{line_of(path, key)}: tls: ") and expected in problem


def test_an_expired_leaf_is_an_error_and_one_expiring_soon_a_warning(certs):
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = issue(certs.ca, "localhost", validity=datetime.timedelta(days=1), not_before=now - datetime.timedelta(days=2))
    write_pair(expired, certs.folder / "server.pem", certs.folder / "server-key.pem")
    path = write_config(certs.folder, TLS)
    [problem] = problems(path)
    assert f"{path}:{line_of(path, 'cert_file')}:" in problem and "expired at" in problem and "renew it" in problem
    soon = issue(certs.ca, "localhost", validity=datetime.timedelta(days=10))
    write_pair(soon, certs.folder / "server.pem", certs.folder / "server-key.pem")
    _, warnings = load_checked(lambda: load_config(path, dotenv=None))
    assert [w for w in warnings if "expires in 9.9 days" in w or "expires in 10.0 days" in w], warnings


@pytest.mark.parametrize("extra, key, expected", [
    ("  client_certs: sometimes\n", "client_certs", "must be one of none, optional, required"),
    ("  client_certs: required\n", "client_certs", "needs client_ca_file"),
    ("  client_ca_file: ca.pem\n", "client_ca_file", "client_certs is none"),
    ("  min_version: TLSv1.1\n", "min_version", "must be TLSv1.2 or TLSv1.3"),
    ("  ciphers: ALL\n", "ciphers", "unknown key 'ciphers' in tls"),
])
def test_each_bad_setting_is_an_error_with_its_line(certs, extra, key, expected):
    path = write_config(certs.folder, TLS + extra)
    [problem] = problems(path)
    assert problem.startswith(f"{path}:{line_of(path, key)}:") and expected in problem


@pytest.mark.parametrize("section, key", [
    ('tls:\n  cert_file: ""\n  key_file: server-key.pem\n', "cert_file"),
    ('tls:\n  cert_file: server.pem\n  key_file: ""\n', "key_file"),
    ("tls:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_certs: optional\n  client_ca_file: ''\n",
     "client_ca_file"),
])
def test_an_empty_file_setting_is_an_error_never_plain_http(certs, section, key):
    """A `tls:` section whose file is '' loaded with TLS off: the gateway served plain http (fail-open)."""
    path = write_config(certs.folder, section)
    found = problems(path)
    assert any(p.startswith(f"{path}:{line_of(path, key)}:") and "must not be empty" in p for p in found), found


def test_token_binding_is_optional_or_required(certs):
    path = write_config(certs.folder, "", provider_yaml("http://127.0.0.1:9/jwks.json", extra="token_binding: always"))
    [problem] = problems(path)
    assert f":{line_of(path, 'token_binding')}:" in problem and "token_binding must be optional" in problem
    path = write_config(certs.folder, "", provider_yaml("http://127.0.0.1:9/jwks.json", extra="token_binding: required"))
    assert load_config(path, dotenv=None).providers[0].token_binding == "required"
    assert load_config(write_config(certs.folder, ""), dotenv=None).providers[0].token_binding == "optional"


def test_flags_replace_the_files_or_turn_tls_on(certs, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_pair(certs.server, other / "a.pem", other / "a-key.pem")
    plain = write_config(certs.folder, "")
    tls = load_config(plain, dotenv=None, tls_cert=str(other / "a.pem"), tls_key=str(other / "a-key.pem")).tls
    assert (tls.cert_file, tls.client_certs) == (str(other / "a.pem"), "none")
    with_section = write_config(certs.folder, TLS + "  client_ca_file: ca.pem\n  client_certs: optional\n")
    tls = load_config(with_section, dotenv=None, tls_cert=str(other / "a.pem"), tls_key=str(other / "a-key.pem")).tls
    assert (tls.cert_file, tls.key_file, tls.client_certs) == (str(other / "a.pem"), str(other / "a-key.pem"),
                                                               "optional")
    [problem] = problems(plain, tls_cert=str(other / "a.pem"))
    assert "--tls-cert and --tls-key" in problem


def run_cli(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_check_reports_a_bad_pair_and_the_environment_overrides_the_file(certs, tmp_path):
    certs.client_files(certs.client, "client")
    path = write_config(certs.folder, TLS.replace("server-key.pem", "client-key.pem"))
    bad = run_cli("check", "--offline", "--config", str(path))
    assert bad.returncode == 2 and f"{path}:{line_of(path, 'key_file')}: tls: key_file" in bad.stderr
    fixed = run_cli("check", "--offline", "--config", str(path),
                    env={"GATEWAY_TLS_CERT": str(certs.folder / "server.pem"),
                         "GATEWAY_TLS_KEY": str(certs.folder / "server-key.pem")})
    assert fixed.returncode == 0, fixed.stderr
    flags = run_cli("check", "--offline", "--config", str(path), "--tls-cert", str(certs.folder / "server.pem"),
                    "--tls-key", str(certs.folder / "server-key.pem"))
    assert flags.returncode == 0, flags.stderr


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("127.0.0.1", False)])
async def test_serving_plain_http_off_loopback_warns_once_at_start(provider, host, warned, caplog):
    caplog.set_level(logging.WARNING, "gateway")
    text = config_text("http://127.0.0.1:5000", provider_yaml(provider.jwks_uri), ROUTES)
    async with running_gateway(text.replace("listen: 127.0.0.1:0", f"listen: {host}:0")):
        pass
    notes = [r for r in caplog.records if "without tls" in r.getMessage()]
    assert len(notes) == (1 if warned else 0)
    if warned:
        assert "cleartext" in notes[0].getMessage() and notes[0].levelno == logging.WARNING


def test_a_reload_that_changes_tls_settings_says_they_need_a_restart(certs):
    from gateway.ops.reload import restart_only_changes

    before = load_config(write_config(certs.folder, TLS), dotenv=None)
    renewed = issue(certs.ca, "localhost", server_names=("127.0.0.1",), validity=datetime.timedelta(days=60))
    write_pair(renewed, certs.folder / "server.pem", certs.folder / "server-key.pem")
    same_settings = load_config(write_config(certs.folder, TLS), dotenv=None)
    assert before.tls.not_after != same_settings.tls.not_after  # new files: they rotate live
    assert restart_only_changes(before, same_settings) == []
    stricter = load_config(write_config(certs.folder, TLS + "  min_version: TLSv1.3\n"), dotenv=None)
    assert [c for c in restart_only_changes(before, stricter) if c.startswith("tls")]
    assert [c for c in restart_only_changes(before, load_config(write_config(certs.folder, ""), dotenv=None))
            if c.startswith("tls")]


def test_token_cert_bound_names_an_unusable_certificate_file(tmp_path):
    result = run_cli("token", "--key-dir", str(tmp_path / "keys"), "--cert-bound", str(tmp_path / "absent.pem"))
    assert result.returncode == 2 and "--cert-bound" in result.stderr and "absent.pem" in result.stderr
    (tmp_path / "junk.pem").write_text("junk\n")
    result = run_cli("token", "--key-dir", str(tmp_path / "keys"), "--cert-bound", str(tmp_path / "junk.pem"))
    assert result.returncode == 2 and "junk.pem" in result.stderr, result.stderr
