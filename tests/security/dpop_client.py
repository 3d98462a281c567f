"""A DPoP client made with joserfc, an implementation independent of the gateway's (python-jose + cryptography).

Its keys, thumbprints and proofs are joserfc's own; `ath` is computed here with hashlib from RFC 9449
§4.2's words.  Tokens are bound to a key by putting its thumbprint in `cnf.jkt`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time

from joserfc import jws
from joserfc.jwk import ECKey, RSAKey


def ath(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode("ascii")).digest()).rstrip(b"=").decode()


class DpopKey:
    def __init__(self, algorithm: str = "ES256"):
        self.algorithm = algorithm
        self.key = ECKey.generate_key("P-256") if algorithm == "ES256" else RSAKey.generate_key(2048)
        self.public = self.key.as_dict(private=False)
        self.jkt = self.key.thumbprint()  # RFC 7638, by joserfc

    def proof(self, method: str, htu: str, token: str | None = None, *, iat: float | None = None,
              jti: str | None = None, nonce: str | None = None, header: dict | None = None,
              claims: dict | None = None, drop: tuple[str, ...] = (), jwk: dict | None = None) -> str:
        """A signed proof; `header`/`claims` override or add members, `drop` removes claims."""
        protected = {"typ": "dpop+jwt", "alg": self.algorithm, "jwk": jwk or self.public, **(header or {})}
        body = {"jti": jti or secrets.token_urlsafe(16), "htm": method, "htu": htu,
                "iat": int(time.time()) if iat is None else iat}
        if token is not None:
            body["ath"] = ath(token)
        if nonce is not None:
            body["nonce"] = nonce
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        return jws.serialize_compact(protected, json.dumps(body).encode(), self.key,
                                     algorithms=[protected["alg"]])
