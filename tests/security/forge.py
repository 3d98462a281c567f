"""Forging tokens as an attacker (or a buggy issuer) would: exact header and payload bytes, real signatures.

python-jose's encoder always emits well-formed JSON, so tokens with
duplicate header keys, deep nesting, `NaN` or odd types are signed here from
raw bytes with the `cryptography` primitives themselves (PKCS#1 v1.5 or
ECDSA with the raw r||s encoding JWS uses).
"""
from __future__ import annotations

import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support.keys import b64url

HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def raw_json(value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def signature(private_key, algorithm: str, signing_input: bytes) -> bytes:
    """The JWS signature bytes for RS*/PS*/ES* over `signing_input`."""
    digest = HASHES[algorithm[2:]]()
    if isinstance(private_key, rsa.RSAPrivateKey):
        pad = padding.PKCS1v15() if algorithm.startswith("RS") else padding.PSS(
            mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return private_key.sign(signing_input, pad, digest)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey), private_key
    r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(digest)))
    size = (private_key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def sign_raw(private_key, algorithm: str, header, payload) -> str:
    """A compact JWS over exactly these header and payload bytes (dicts are JSON-encoded)."""
    signing_input = b64url(raw_json(header)) + "." + b64url(raw_json(payload))
    return signing_input + "." + b64url(signature(private_key, algorithm, signing_input.encode()))
