"""The README walk-through, as a user runs it: three real processes started from the command line."""
import json
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support.config import REPO
from tests.support.processes import dev_stack, free_port, wait_http

PY = sys.executable


def call(url, token=None, headers=None, data=None):
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    with dev_stack(tmp, ["--config", "config/routes.yaml"]) as (gateway_port, issuer, keys, gateway):
        base = f"http://127.0.0.1:{gateway_port}"
        wait_http(base + "/", process=gateway)

        def token(scope, sub="alice", ttl=3600):
            import subprocess
            out = subprocess.run([PY, "-m", "gateway", "token", "--scope", scope, "--sub", sub, "--ttl", str(ttl),
                                  "--issuer", issuer, "--key-dir", keys], cwd=REPO, capture_output=True,
                                 text=True, check=True, timeout=30)
            return out.stdout.strip()

        deadline = time.monotonic() + 20  # keys are fetched in the background at start
        probe = token("read:user")
        while call(base + "/user", probe)[0] == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield {"base": base, "issuer": issuer, "token": token, "keys": tmp / "keys", "log": tmp / "gateway.log"}


def test_tutorial_curl_walkthrough(stack):
    base, token = stack["base"], stack["token"]
    assert call(base + "/")[::2] == (200, {"msg": "Hello world!"})
    status, headers, body = call(base + "/user")
    assert (status, body["code"]) == (401, "authorization_header_missing")
    assert call(base + "/user", token("read:user"))[::2] == (200, {"msg": "Hello user!"})
    status, headers, body = call(base + "/admin", token("read:user"))
    assert (status, body["code"]) == (403, "insufficient_scope")
    assert call(base + "/admin", token("read:user read:admin"))[::2] == (200, {"msg": "Hello admin!"})


def test_expired_token_from_the_cli_is_refused(stack):
    status, headers, body = call(stack["base"] + "/user", stack["token"]("read:user", ttl=-120))
    assert (status, body["code"]) == (401, "token_expired")
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_client_credentials_token_from_the_dev_issuer(stack):
    clients = json.loads((stack["keys"] / "clients.json").read_text())
    form = {"client_id": "dev-admin-client", "client_secret": clients["dev-admin-client"]["secret"],
            "audience": "https://api.example.test", "grant_type": "client_credentials"}
    status, _, body = call(stack["issuer"] + "oauth/token", data=json.dumps(form).encode(),
                           headers={"Content-Type": "application/json"})
    assert status == 200 and body["token_type"] == "Bearer"
    assert call(stack["base"] + "/admin", body["access_token"])[::2] == (200, {"msg": "Hello admin!"})
    status, _, body = call(stack["issuer"] + "oauth/token", data=json.dumps({**form, "client_secret": "x"}).encode(),
                           headers={"Content-Type": "application/json"})
    assert status == 401


def test_gateway_log_never_contains_a_token(stack):
    sent = stack["token"]("read:user", sub="log-check")
    call(stack["base"] + "/user", sent)
    call(stack["base"] + "/admin", sent)
    call(stack["base"] + "/user", sent[:-4] + "AAAA")
    log = stack["log"].read_text()
    assert "/user" in log
    signature = sent.rsplit(".", 1)[1]
    assert sent.split(".")[1] not in log and signature not in log and "Bearer" not in log


def test_second_gateway_on_a_busy_port_says_so(stack):
    import subprocess

    port = stack["base"].rsplit(":", 1)[1]
    result = subprocess.run([PY, "-m", "gateway", "serve", "--config", "config/routes.yaml",
                             "--listen", f"127.0.0.1:{port}"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and port in result.stderr
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr


def test_dev_issuer_refuses_odd_token_requests_without_500(stack):
    for body in ({"client_id": ["dev-admin-client"], "client_secret": "x", "grant_type": "client_credentials"},
                 {"client_id": "dev-admin-client", "client_secret": "é", "grant_type": "client_credentials"},
                 {"grant_type": "password"}, [1, 2]):
        status, _, answer = call(stack["issuer"] + "oauth/token", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
        assert status in (400, 401), (body, status)
        assert "error" in answer


def test_dev_issuer_key_files_are_private(stack):
    for name in ("signing-key.pem", "clients.json"):
        assert (stack["keys"] / name).stat().st_mode & 0o077 == 0


def test_gateway_refuses_to_start_without_the_c_http_parser():
    import subprocess

    result = subprocess.run([PY, "-m", "gateway", "serve", "--config", "config/routes.yaml", "--listen",
                             f"127.0.0.1:{free_port()}"], cwd=REPO, capture_output=True, text=True, timeout=30,
                            env={**__import__("os").environ, "AIOHTTP_NO_EXTENSIONS": "1"})
    assert result.returncode == 1
    assert "C HTTP parser is not in use" in result.stderr and "Traceback" not in result.stderr


def _cli(*args: str) -> str:
    import subprocess

    return subprocess.run([PY, "-m", "gateway", *args], cwd=REPO, capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def test_dpop_walkthrough(stack, tmp_path):
    """README "Tokens bound to a key": a bound token accepted with its proof, the proof replayed refused,
    the token stolen and sent as Bearer refused; and the dev issuer binds tokens to a proof's key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "client.pem"  # what `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    base = stack["base"]
    token = _cli("token", "--dpop-key", str(key), "--scope", "read:user", "--issuer", stack["issuer"],
                 "--key-dir", str(stack["keys"]))
    proof = _cli("dpop-proof", "--key", str(key), "GET", base + "/user", "--token", token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    assert call(base + "/user", headers=headers)[::2] == (200, {"msg": "Hello user!"})
    status, answer_headers, body = call(base + "/user", headers=headers)
    assert (status, body["code"]) == (401, "invalid_dpop_proof")
    assert answer_headers["WWW-Authenticate"] == 'Bearer realm="api"'  # the first of two; DPoP's has the error
    status, _, body = call(base + "/user", token)
    assert (status, body["code"]) == (401, "invalid_token") and "bound to a DPoP key" in body["description"]

    clients = json.loads((stack["keys"] / "clients.json").read_text())
    form = {"client_id": "dev-user-client", "client_secret": clients["dev-user-client"]["secret"],
            "audience": "https://api.example.test", "grant_type": "client_credentials"}
    url = stack["issuer"] + "oauth/token"
    status, _, issued = call(url, data=json.dumps(form).encode(), headers={
        "Content-Type": "application/json", "DPoP": _cli("dpop-proof", "--key", str(key), "POST", url)})
    assert (status, issued["token_type"]) == (200, "DPoP")
    proof = _cli("dpop-proof", "--key", str(key), "GET", base + "/user", "--token", issued["access_token"])
    headers = {"Authorization": f"DPoP {issued['access_token']}", "DPoP": proof}
    assert call(base + "/user", headers=headers)[::2] == (200, {"msg": "Hello user!"})
    status, _, refused = call(url, data=json.dumps(form).encode(), headers={
        "Content-Type": "application/json", "DPoP": _cli("dpop-proof", "--key", str(key), "POST", url + "x")})
    assert (status, refused["error"]) == (400, "invalid_dpop_proof")
