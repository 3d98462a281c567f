"""The README's TLS walk-through as a user runs it: devcerts, a bound token, curl with and without the certificate."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.support.config import REPO
from tests.support.processes import dev_stack, free_port

PY = sys.executable


def run(*args: str, cwd=REPO) -> str:
    return subprocess.run([PY, "-m", "gateway", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def curl(*args: str) -> tuple[int, dict]:
    assert shutil.which("curl"), "curl is needed (make test installs it)"
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
    body, _, status = out.stdout.rpartition("\n")
    return int(status), json.loads(body) if body else {}


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls-walkthrough")
    work = tmp / "repo"  # config/routes.tls.yaml finds ../.devcerts, as in a checkout
    (work / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "routes.tls.yaml", work / "config")
    run("devcerts", "--dir", str(work / ".devcerts"))
    with dev_stack(tmp, ["--config", str(work / "config" / "routes.tls.yaml")],
                   {"GATEWAY_ADMIN": f"127.0.0.1:{free_port()}"}) as (gateway_port, issuer, keys, gateway):
        certs = work / ".devcerts"
        base = f"https://localhost:{gateway_port}"
        ca = ("--cacert", str(certs / "ca.pem"))
        deadline = time.monotonic() + 20
        while curl(*ca, base + "/")[0] != 200:
            assert gateway.poll() is None, (tmp / "gateway.log").read_text()
            assert time.monotonic() < deadline, "the https gateway did not answer within 20 s"
            time.sleep(0.05)
        bound = run("token", "--scope", "read:user", "--issuer", issuer, "--key-dir", keys,
                    "--cert-bound", str(certs / "client.pem")).strip()
        yield {"base": base, "ca": ca, "cert": ("--cert", str(certs / "client.pem"), "--key",
                                                str(certs / "client-key.pem")), "bound": bound}


def test_a_bound_token_is_accepted_with_its_certificate_and_refused_without(walkthrough):
    w = walkthrough
    auth = ("-H", f"Authorization: Bearer {w['bound']}")
    assert curl(*w["ca"], *w["cert"], *auth, w["base"] + "/user") == (200, {"msg": "Hello user!"})
    status, body = curl(*w["ca"], *auth, w["base"] + "/user")
    assert status == 401 and "did not present" in body["description"]


def test_plain_http_to_the_https_port_is_told_to_use_https(walkthrough):
    status, body = curl(walkthrough["base"].replace("https://localhost", "http://127.0.0.1") + "/")
    assert status == 400 and body["code"] == "https_required"


def test_kubernetes_tls_patch_mounts_the_cert_manager_secret_as_a_directory():
    """deploy/kubernetes/tls: the patched Deployment still matches the Kubernetes schema, and the
    gateway's --tls-cert/--tls-key point into the mounted cert-manager Secret (not a subPath)."""
    import kubernetes_validate
    import yaml

    folder = REPO / "deploy" / "kubernetes"
    certificate = yaml.safe_load((folder / "tls" / "certificate.yaml").read_text())
    assert (certificate["apiVersion"], certificate["kind"]) == ("cert-manager.io/v1", "Certificate")
    patch = yaml.safe_load((folder / "tls" / "deployment-patch.yaml").read_text())["spec"]["template"]["spec"]
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    gateway = next(c for c in pod["containers"] if c["name"] == "gateway")
    [patched] = patch["containers"]
    gateway["args"] = patched["args"]  # what the strategic merge does: lists of named items merge by name
    gateway["volumeMounts"] += patched["volumeMounts"]
    pod["volumes"] += patch["volumes"]
    kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    [volume] = patch["volumes"]
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    [mount] = patched["volumeMounts"]
    assert "subPath" not in mount and mount["name"] == volume["name"]
    args = patched["args"]
    for flag, name in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")):
        assert args[args.index(flag) + 1] == f"{mount['mountPath']}/{name}"
