"""Development tokens as a newcomer makes them: `gateway token` claims and keys, and the dev issuer's clients file."""
import json
import urllib.error
import urllib.request

from jose import jwt

from gateway.tools.dev_keys import DevKeys
from gateway.tools.dev_tokens import REPOSITORY_KEY_DIR
from tests.e2e.console import GATEWAY, gateway
from tests.support.processes import free_port, start_process, stop_process, wait_http


def payload(token: str, keys: DevKeys) -> dict:
    """The claims, after checking the signature with the folder's public key."""
    return jwt.decode(token, keys.public_jwk, algorithms=["RS256"], options={"verify_aud": False})


def test_token_claims_from_the_command_line(tmp_path):
    """Item 1: --claim NAME=VALUE (JSON when it parses, URL-shaped names as they are), --claims, no scope claim."""
    keys_dir = tmp_path / "keys"
    minted = gateway("token", "--new-key", "--key-dir", str(keys_dir), "--sub", "ann",
                     "--claims", '{"team": "blue", "tenant": "overridden"}',
                     "--claim", 'https://example.com/roles=["analyst"]', "--claim", "tenant=acme",
                     "--claim", "level=3", "--claim", "admin=true", "--claim", "note=a=b")
    assert minted.returncode == 0, minted.stderr
    claims = payload(minted.stdout.strip(), DevKeys.load(keys_dir))
    assert "scope" not in claims
    assert {k: claims[k] for k in ("sub", "team", "tenant", "https://example.com/roles", "level", "admin", "note")} \
        == {"sub": "ann", "team": "blue", "tenant": "acme", "https://example.com/roles": ["analyst"], "level": 3,
            "admin": True, "note": "a=b"}
    scoped = gateway("token", "--key-dir", str(keys_dir), "--scope", "read:user write:orders")
    assert payload(scoped.stdout.strip(), DevKeys.load(keys_dir))["scope"] == "read:user write:orders"
    for bad in (["--claim", "novalue"], ["--claims", "[1]"], ["--claims", "{nope"]):
        refused = gateway("token", "--key-dir", str(keys_dir), *bad)
        assert refused.returncode == 2 and refused.stdout == ""
        assert "--claim" in refused.stderr and "e.g." in refused.stderr


def test_token_outside_the_repository_never_makes_a_key_silently(tmp_path):
    """Item 8: no key in ./.devissuer -> exit 2 naming the folder and the repository's key; --new-key makes one;
    every token says which key folder and kid signed it."""
    repository_keys = DevKeys.load_or_create(REPOSITORY_KEY_DIR)  # what make run's issuer uses
    refused = gateway("token", "--scope", "read:user", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert f"no development signing key in {tmp_path}/.devissuer/" in refused.stderr
    assert f"uses {REPOSITORY_KEY_DIR}/ (kid {repository_keys.kid}): add --key-dir {REPOSITORY_KEY_DIR}" in refused.stderr
    assert "--new-key" in refused.stderr
    assert not (tmp_path / ".devissuer").exists()
    pointed = gateway("token", "--key-dir", str(REPOSITORY_KEY_DIR), cwd=tmp_path)
    assert pointed.returncode == 0
    assert f"signed with key kid {repository_keys.kid} from {REPOSITORY_KEY_DIR}/" in pointed.stderr
    assert jwt.get_unverified_header(pointed.stdout.strip())["kid"] == repository_keys.kid
    created = gateway("token", "--new-key", cwd=tmp_path)
    assert created.returncode == 0
    new_kid = DevKeys.load(tmp_path / ".devissuer").kid
    assert new_kid != repository_keys.kid
    assert f"signed with a NEW key kid {new_kid} from {tmp_path}/.devissuer/" in created.stderr


def post(url: str, form: dict) -> tuple[int, dict]:
    data = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_devissuer_clients_file_declares_scopes_claims_and_audiences(tmp_path):
    """Item 1: clients.json next to the key gives a client extra claims and audiences, no scope if none; edits
    apply without a restart; a broken file is a 500 naming the client and field."""
    keys_dir = tmp_path / "keys"
    keys = DevKeys.load_or_create(keys_dir)
    clients_file = keys_dir / "clients.json"
    clients_file.write_text(json.dumps({
        "reports-client": {"secret": "s3cret", "claims": {"https://example.com/roles": ["analyst"], "tenant": "acme"},
                           "audiences": ["https://api.example.test", "https://reports.example.test"]},
        "writer": {"secret": "w", "scope": "write:orders"},
    }))
    port = free_port()
    issuer = start_process([GATEWAY, "devissuer", "--listen", f"127.0.0.1:{port}", "--key-dir", str(keys_dir)],
                           tmp_path / "issuer.log")
    url = f"http://127.0.0.1:{port}/oauth/token"
    try:
        wait_http(f"http://127.0.0.1:{port}/.well-known/jwks.json", process=issuer)
        status, body = post(url, {"grant_type": "client_credentials", "client_id": "reports-client",
                                  "client_secret": "s3cret", "audience": "https://reports.example.test"})
        assert status == 200, body
        claims = payload(body["access_token"], keys)
        assert (claims["aud"], claims["https://example.com/roles"], claims["tenant"], claims["sub"]) == \
            ("https://reports.example.test", ["analyst"], "acme", "reports-client@clients")
        assert "scope" not in claims and "scope" not in body
        status, body = post(url, {"grant_type": "client_credentials", "client_id": "writer", "client_secret": "w",
                                  "audience": "https://reports.example.test"})
        assert status == 403
        assert "Service not found: https://reports.example.test" in body["error_description"]
        assert f"add it to 'audiences' in {clients_file}" in body["error_description"]
        status, body = post(url, {"grant_type": "client_credentials", "client_id": "writer", "client_secret": "w",
                                  "audience": "https://api.example.test"})
        assert status == 200 and payload(body["access_token"], keys)["scope"] == "write:orders"
        clients_file.write_text(json.dumps({"writer": {"secret": "w", "scope": "write:orders", "audience": "x"}}))
        status, body = post(url, {"grant_type": "client_credentials", "client_id": "writer", "client_secret": "w"})
        assert status == 500
        assert body["error_description"] == (f"{clients_file}: client 'writer': unknown field(s) audience "
                                             "(known: secret, scope, claims, audiences)")
    finally:
        stop_process(issuer)
