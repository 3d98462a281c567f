"""What `gateway token` needs beyond the issuer itself: claims from the command line, and the right key.

A token signed by a key the running gateway does not trust fails with
`invalid_signature`, so `gateway token` never makes a key silently: outside
the repository it points at the repository's key instead.
"""
from __future__ import annotations

import json
from pathlib import Path

from gateway.tools.dev_keys import DEFAULT_KEY_DIR, KEY_FILE, DevKeys

REPOSITORY_KEY_DIR = Path(__file__).resolve().parents[2] / DEFAULT_KEY_DIR  # the one `make run` uses


class ClaimArgumentError(ValueError):
    pass


def claim_value(text: str):
    """JSON when it parses (`true`, `3`, `["a","b"]`, `{"k":1}`), else the text itself as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def extra_claims(whole: str | None, items: list[str]) -> dict:
    """--claims '{...}' first, then each --claim NAME=VALUE over it."""
    claims: dict = {}
    if whole is not None:
        try:
            claims = json.loads(whole)
        except ValueError as exc:
            raise ClaimArgumentError(f"--claims is not JSON ({exc}); write e.g. --claims "
                                     "'{\"https://example.com/roles\": [\"analyst\"]}'") from None
        if not isinstance(claims, dict):
            raise ClaimArgumentError("--claims must be a JSON object, e.g. --claims '{\"tenant\": \"acme\"}'")
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ClaimArgumentError(f"--claim {item!r} must be NAME=VALUE, e.g. --claim tenant=acme "
                                     "or --claim 'https://example.com/roles=[\"analyst\"]'")
        claims[name] = claim_value(value)
    return claims


def key_for_token(folder: str, new_key: bool) -> tuple[DevKeys, bool]:
    """(keys, whether they were created now); raises NoKey where there is none and `new_key` is not set."""
    existed = (Path(folder) / KEY_FILE).exists()
    return DevKeys.load(folder, create=new_key), not existed


def no_key_message(folder: str) -> str:
    where = Path(folder).resolve()
    message = f"no development signing key in {where}/; a new key would sign tokens no running gateway trusts."
    if (REPOSITORY_KEY_DIR / KEY_FILE).exists() and REPOSITORY_KEY_DIR != where:
        kid = DevKeys.load(REPOSITORY_KEY_DIR).kid
        message += (f" The repository's development issuer (make run) uses {REPOSITORY_KEY_DIR}/ (kid {kid}): "
                    f"add --key-dir {REPOSITORY_KEY_DIR}")
    else:
        message += " Run `make run` in the repository first (it creates the key), or pass --key-dir DIR"
    return message + "; or --new-key to create a key here."
