"""The client side of DPoP for trying the gateway out: proofs for curl and the thumbprint a token is bound to.

Keys are PEM files (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.pem`);
an EC P-256 key signs ES256 proofs, an RSA key RS256.  Signed with python-jose.
"""
from __future__ import annotations

import secrets
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jose import jwk, jws

from gateway.auth.dpop import PROOF_TYP, access_token_hash, jwk_thumbprint


class ClientKey:
    def __init__(self, pem: bytes):
        key = load_pem_private_key(pem, password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            self.algorithm = "ES256"
        elif isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = "RS256"
        else:
            raise ValueError("a DPoP key must be an EC P-256 or an RSA private key in PEM")
        self.pem = pem.decode()
        public = jwk.construct(self.pem, self.algorithm).public_key().to_dict()
        members = ("kty", "crv", "x", "y") if self.algorithm == "ES256" else ("kty", "n", "e")
        self.public_jwk = {name: public[name] for name in members}
        self.jkt = jwk_thumbprint(self.public_jwk)

    @classmethod
    def load(cls, path: str | Path) -> "ClientKey":
        return cls(Path(path).read_bytes())

    def proof(self, method: str, url: str, token: str | None = None, nonce: str | None = None) -> str:
        """A fresh proof for one request: its own jti, now as iat, the URL without query and fragment."""
        claims = {"jti": secrets.token_urlsafe(16), "htm": method.upper(), "htu": url.split("#")[0].split("?")[0],
                  "iat": int(time.time())}
        if token is not None:
            claims["ath"] = access_token_hash(token)
        if nonce is not None:
            claims["nonce"] = nonce
        return jws.sign(claims, self.pem, headers={"typ": PROOF_TYP, "jwk": self.public_jwk}, algorithm=self.algorithm)
