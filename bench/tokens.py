"""The benchmark's own issuer: a key, its JWKS and PEM, and fast minting over every core.

The bench never uses the development issuer's key: it makes a key per run,
gives the gateway the public JWK (`jwks_file`) and HAProxy the same key as PEM,
so both verify exactly the same tokens.  RS256 signing costs ~1 ms a token
on this kind of machine (100k tokens: 1-2.5 minutes on 2 cores), ES256 ~30 us,
which is why the memory scenario mints ES256 tokens unless told otherwise.
"""
from __future__ import annotations

import base64
import json
import multiprocessing
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://issuer.bench.invalid/"
AUDIENCE = "https://api.example.test"
KID = "bench-rs256"
KIDS = {"RS256": "bench-rs256", "ES256": "bench-es256"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class BenchIssuer:
    def __init__(self, private_key, algorithm: str = "RS256"):
        self.private_key = private_key
        self.algorithm = algorithm
        self.kid = KIDS[algorithm]
        self.header_b64 = b64url(json.dumps({"alg": algorithm, "typ": "JWT", "kid": self.kid},
                                            separators=(",", ":")).encode())

    @classmethod
    def create(cls, algorithm: str = "RS256") -> "BenchIssuer":
        if algorithm == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), algorithm)
        if algorithm != "RS256":
            raise ValueError(f"the bench mints RS256 or ES256, not {algorithm}")
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm)

    @classmethod
    def load(cls, pem: bytes, algorithm: str = "RS256") -> "BenchIssuer":
        return cls(serialization.load_pem_private_key(pem, password=None), algorithm)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self) -> dict:
        numbers = self.private_key.public_key().public_numbers()
        if self.algorithm == "ES256":
            return {"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
                    "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                "n": _b64_int(numbers.n), "e": _b64_int(numbers.e)}

    def jwks(self) -> dict:
        return {"keys": [self.jwk()]}

    def mint(self, claims: dict) -> str:
        signing_input = self.header_b64 + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
        data = signing_input.encode("ascii")
        if self.algorithm == "ES256":
            r, s = decode_dss_signature(self.private_key.sign(data, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)

    def token(self, scope: str = "read:user read:admin", sub: str = "bench", ttl: float = 3600,
              exp: float | None = None, **extra) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": sub, "aud": AUDIENCE, "iat": now,
                  "exp": int(exp if exp is not None else now + ttl), "scope": scope, **extra}
        return self.mint(claims)


# -- parallel minting ------------------------------------------------------------
_worker_issuer: BenchIssuer | None = None


def _init_worker(pem: bytes, algorithm: str) -> None:
    global _worker_issuer
    _worker_issuer = BenchIssuer.load(pem, algorithm)


def _mint_range(job: tuple[int, int, int]) -> list[str]:
    start, stop, exp = job
    return [_worker_issuer.token(sub=f"user-{i:06d}", exp=exp, jti=f"bench-{i}") for i in range(start, stop)]


def mint_many(issuer: BenchIssuer, count: int, exp: float, out: Path, processes: int | None = None) -> float:
    """Write `count` distinct valid admin tokens (one a line) expiring at `exp`; returns seconds spent."""
    started = time.monotonic()
    processes = processes or os.cpu_count() or 1
    step = 500
    jobs = [(i, min(i + step, count), int(exp)) for i in range(0, count, step)]
    with multiprocessing.get_context("fork").Pool(processes, _init_worker, (issuer.private_pem(), issuer.algorithm)) as pool, \
            open(out, "w") as handle:
        for chunk in pool.imap(_mint_range, jobs):
            handle.write("\n".join(chunk) + "\n")
    return time.monotonic() - started
