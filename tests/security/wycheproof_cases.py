"""Wycheproof JOSE vectors as gateway test cases: `raw` as published, `resign` with our claims.

The vectors (tests/vectors/wycheproof, Apache-2.0) sign payloads like "foo",
which a JWT gateway refuses before any signature check.  So each vector is
used twice:

* `all_vectors`: the token exactly as published.  Every one must be a 401; the
  ones marked valid must also verify with python-jose's signature layer (the
  one the gateway uses), or be counted as unsupported by it (PS*, EdDSA).
* `resign_cases`: the vector's header and its defect carried onto our own
  claim set (our issuer, audience, exp), signed with the vector's private
  key, so the gateway's signature and key checks are what decide.  RSA
  PKCS#1 defects are carried by rewriting the digest inside EM = s^e mod n
  and re-signing EM with d; ECDSA (r, s) defects by applying the same
  offsets to our (r, s) while keeping the message-independent values (0, 1,
  n-1, n) literal; structural defects (missing, extra or modified parts) by
  substituting our parts for the vector's.  Every carried signature is
  checked to be invalid with `cryptography` before it is sent.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jose import jwk, jws
from jose.utils import base64url_decode

from tests.security.forge import HASHES, signature
from tests.support.keys import b64url, claims

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "wycheproof"
FILES = {"jws": "json_web_signature_test.json", "jwk": "json_web_key_test.json",
         "jwcrypto": "json_web_crypto_test.json"}
GATEWAY_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
ORDERS = {"P-256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
          "P-384": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973,
          "P-521": (1 << 521) - 0x5AE79787C40D069948033FEB708F65A2FC44A36477663B851449048E16EC79BF7}
# Invalid vectors the gateway accepts once re-signed, each with the reason it is left as is.
KNOWN_GAPS = {
    ("jwk", 7): "ROCA-weak RSA modulus: the published key is trusted as the issuer's; no ROCA fingerprinting",
    ("jwcrypto", 46): "ROCA-weak RSA modulus (same key as jwk #7)",
}


def _keys(value) -> list[dict]:
    if value is None:
        return []
    return list(value["keys"]) if "keys" in value else [value]


def _decode(segment: str) -> bytes | None:
    try:
        return base64url_decode(segment.encode("ascii"))
    except ValueError:
        return None


@dataclass
class Vector:
    source: str
    group: str
    tc_id: int
    comment: str
    valid: bool
    token: str  # compact serialisation, or the JSON text of a JSON-serialised one
    public: list[dict]  # what a JWKS publishing this group's key would hold
    private: list[dict]
    jwe: bool = False
    flags: tuple[str, ...] = ()

    @property
    def category(self) -> str:
        return f"{self.source}:{self.group}"

    @property
    def key(self) -> tuple[str, int]:
        return (self.source, self.tc_id)

    @property
    def parts(self) -> list[str] | None:
        return None if self.token.startswith("{") else self.token.split(".")

    @property
    def header(self) -> dict | None:
        raw = _decode(self.parts[0]) if self.parts else None
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    @property
    def alg(self) -> str | None:
        alg = (self.header or {}).get("alg")
        return alg if isinstance(alg, str) else None

    def signing_key(self) -> dict | None:
        """The private JWK whose kid the header names (or the group's only one)."""
        kid = (self.header or {}).get("kid")
        matching = [k for k in self.private if k.get("kid") == kid] or self.private[:1]
        return matching[0] if matching else None


def load(source: str) -> list[Vector]:
    document = json.loads((VECTORS / FILES[source]).read_text())
    vectors = []
    for group in document["testGroups"]:
        public, private = _keys(group.get("public")), _keys(group.get("private"))
        for test in group["tests"]:
            token = test.get("jws", test.get("jwe"))
            vectors.append(Vector(
                source=source, group=group.get("comment", "?"), tc_id=int(test["tcId"]),
                comment=test.get("comment", ""), valid=test["result"] == "valid",
                token=token if isinstance(token, str) else json.dumps(token),
                public=public or private, private=private, jwe="jwe" in test,
                flags=tuple(test.get("flags") or ())))
    return vectors


def all_vectors() -> list[Vector]:
    return [v for source in FILES for v in load(source)]


def jose_verdict(vector: Vector) -> str:
    """What python-jose's signature layer says: "verified", "refused" or "unsupported"."""
    if vector.jwe:
        return "unsupported"
    for key in vector.public or vector.private:
        try:
            jwk.construct(key, vector.alg)
        except Exception:
            continue
        try:
            jws.verify(vector.token, key, [vector.alg])
            return "verified"
        except Exception:
            return "refused"
    return "unsupported" if vector.alg and vector.alg[:2] in ("PS", "Ed") else "refused"


# -- re-signing --------------------------------------------------------------------------------------------

@dataclass
class Resigned:
    vector: Vector
    token: str
    expect_accept: bool
    why: str  # the expectation's reason, for the report
    notes: list[str] = field(default_factory=list)


def our_payload(scope: str = "read:user") -> str:
    return b64url(json.dumps(claims(scope, ttl=3600)).encode())


def _int(key: dict, name: str) -> int:
    return int.from_bytes(base64url_decode(key[name].encode()), "big")


def _raw_private(key: dict, value: int) -> int:
    """value^d mod n, by CRT when the JWK has the factors (4x faster than pow with d)."""
    n, d = _int(key, "n"), _int(key, "d")
    if not all(name in key for name in ("p", "q", "dp", "dq", "qi")):
        return pow(value, d, n)
    p, q = _int(key, "p"), _int(key, "q")
    m1, m2 = pow(value, _int(key, "dp"), p), pow(value, _int(key, "dq"), q)
    return m2 + (_int(key, "qi") * (m1 - m2) % p) * q


@functools.lru_cache(maxsize=None)
def _private_key(key_json: str, alg: str):
    """The vector's private key as a `cryptography` object (loading validates it, which is slow: cached)."""
    return jwk.construct(json.loads(key_json), alg).prepared_key


def _digest(alg: str, data: bytes) -> bytes:
    return hashlib.new("sha" + alg[2:], data).digest()


def _rsa_carry(vector: Vector, key: dict, signing_input: str) -> bytes:
    """The vector's PKCS#1 defect, carried onto our signing input (EM digest swap, re-signed with d)."""
    n, e = _int(key, "n"), _int(key, "e")
    size = (n.bit_length() + 7) // 8
    raw = _decode(vector.parts[2]) or b""
    s = int.from_bytes(raw, "big")
    if not raw or s >= n:
        return raw
    em = pow(s, e, n).to_bytes(size, "big")
    old = _digest(vector.alg, f"{vector.parts[0]}.{vector.parts[1]}".encode())
    em = em.replace(old, _digest(vector.alg, signing_input.encode()))
    return _raw_private(key, int.from_bytes(em, "big")).to_bytes(max(len(raw), size), "big")


def _ec_carry(vector: Vector, key: dict, reference: bytes, ours: bytes) -> bytes:
    """The vector's (r, s) defect relative to the group's valid signature, applied to ours."""
    raw = _decode(vector.parts[2]) or b""
    order = ORDERS.get(key.get("crv"), 0)
    if not raw or len(raw) % 2 or len(reference) != len(ours):
        return raw
    half, ref_half = len(raw) // 2, len(reference) // 2
    out = b""
    for index in (0, 1):
        value = int.from_bytes(raw[index * half:(index + 1) * half], "big")
        if value in (0, 1, order - 1, order):  # message-independent special values stay as they are
            out += raw[index * half:(index + 1) * half]
            continue
        base = int.from_bytes(reference[index * ref_half:(index + 1) * ref_half], "big")
        new = int.from_bytes(ours[index * ref_half:(index + 1) * ref_half], "big") + value - base
        try:
            out += new.to_bytes(half, "big")
        except OverflowError:
            out += raw[index * half:(index + 1) * half]
    return out


def _sign(key: dict, alg: str, signing_input: str) -> bytes | None:
    """A correct signature with the vector's own private key, or None if that key cannot sign."""
    if alg[:2] not in ("RS", "PS", "ES", "HS") or alg[2:] not in HASHES:
        return None
    if alg.startswith("HS"):
        return hmac.new(base64url_decode(key["k"].encode()), signing_input.encode(), HASHES[alg[2:]]().name).digest() \
            if "k" in key else None
    try:
        return signature(_private_key(json.dumps(key, sort_keys=True), alg), alg, signing_input.encode())
    except Exception:
        if alg.startswith("RS") and "d" in key:  # keys cryptography will not load (e=1): sign EM with d
            return _rsa_carry_valid(key, alg, signing_input)
        return None


def _rsa_carry_valid(key: dict, alg: str, signing_input: str) -> bytes | None:
    """PKCS#1 v1.5 for keys `cryptography` refuses to load, via a correctly padded EM from a sane key."""
    n = _int(key, "n")
    size = (n.bit_length() + 7) // 8
    helper = rsa.generate_private_key(65537, size * 8)
    em = pow(int.from_bytes(signature(helper, alg, signing_input.encode()), "big"),
             helper.public_key().public_numbers().e, helper.public_key().public_numbers().n)
    return _raw_private(key, em).to_bytes(size, "big")


def verifies(key: dict, alg: str, signing_input: str, sig: bytes) -> bool:
    """Independent check with `cryptography` (not python-jose) that a carried defect really is invalid."""
    try:
        public = jwk.construct({k: v for k, v in key.items() if k not in ("d", "p", "q", "dp", "dq", "qi")},
                               alg).prepared_key
    except Exception:
        return False
    digest = HASHES[alg[2:]]()
    try:
        if alg.startswith("RS"):
            public.verify(sig, signing_input.encode(), padding.PKCS1v15(), digest)
        elif alg.startswith("ES"):
            size = (public.curve.key_size + 7) // 8
            if len(sig) != 2 * size:
                return False
            der = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
            public.verify(der, signing_input.encode(), ec.ECDSA(digest))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _reference(vector: Vector, group: list[Vector]) -> Vector | None:
    """The group's valid vector the defect was made from: same header and payload, else same signature, else header."""
    valid = [c for c in group if c.valid and c.parts and len(c.parts) == 3]
    if not vector.parts:
        return None
    for same in (lambda c: c.parts[:2] == vector.parts[:2], lambda c: c.parts[2] in vector.parts[1:],
                 lambda c: c.parts[1] in vector.parts and c.parts[0] in vector.parts,
                 lambda c: c.parts[0] == vector.parts[0]):
        for candidate in valid:
            if same(candidate):
                return candidate
    return None


def _expect(vector: Vector, key: dict | None) -> tuple[bool, str]:
    """Accept only what is valid, in an algorithm the gateway offers, under a key the JWK allows for it."""
    if not vector.valid:
        gap = KNOWN_GAPS.get(vector.key)
        return (True, "known gap: " + gap) if gap else (False, "invalid vector")
    if vector.alg not in GATEWAY_ALGORITHMS:
        return False, f"{vector.alg} is not offered by the gateway"
    if key is not None and key.get("alg", vector.alg) != vector.alg:
        return False, f"the JWK says alg {key.get('alg')!r}, the token {vector.alg!r}"
    return True, "valid"


def resign(vector: Vector, group: list[Vector]) -> Resigned | None:
    """The vector's defect on our claims, or None where there is nothing to carry (JWE, JSON form, no header)."""
    if vector.jwe or not vector.parts or vector.alg is None:
        return None
    key = vector.signing_key()
    expect, why = _expect(vector, key)
    parts = vector.parts
    payload = our_payload()
    reference = _reference(vector, group)
    if key is None:
        return Resigned(vector, ".".join([parts[0], payload, *parts[2:]]), False, "no private key: structure only")
    if "jwk" in (vector.header or {}):
        return _embedded_key_attack(vector, payload)
    if vector.valid or reference is None:
        # a correct signature: the defect, if any, is in the key or the algorithm, not the signature
        sig = _sign(key, vector.alg, f"{parts[0]}.{payload}")
        if sig is None:
            return Resigned(vector, f"{parts[0]}.{payload}.{parts[2] if len(parts) > 2 else ''}", False,
                            f"no signature can be made for alg {vector.alg!r} with this key: structure only")
        return Resigned(vector, f"{parts[0]}.{payload}.{b64url(sig) if sig else ''}", expect, why)
    ours = _sign(key, reference.alg, f"{reference.parts[0]}.{payload}")
    h, p, sig = reference.parts
    mapping = {h: h, p: payload, sig: b64url(ours) if ours is not None else sig}
    out = []
    for index, segment in enumerate(parts):
        if segment and segment in mapping:
            out.append(mapping[segment])  # a part the vector kept: ours in its place
        elif index == 1 and len(parts) == 3 and parts[0] == h and parts[2] == sig:
            out.append(our_payload("read:user read:admin"))  # a modified payload under the old signature
        elif index == 2 and len(parts) == 3 and parts[:2] == [h, p] and ours is not None:
            signing_input = f"{parts[0]}.{payload}"  # a modified signature: the same defect on ours
            if vector.alg.startswith("RS"):
                carried = _rsa_carry(vector, key, signing_input)
            elif vector.alg.startswith("ES"):
                carried = _ec_carry(vector, key, _decode(sig) or b"", ours)
            else:
                carried = _decode(segment) or b""
            out.append(b64url(carried) if carried else segment)
        else:
            out.append(segment)  # a part the vector replaced (alg none, forged header): as published
    token = ".".join(out)
    notes = []
    if len(out) == 3 and vector.alg in GATEWAY_ALGORITHMS:
        sig = _decode(out[2])
        if sig is not None and verifies(key, vector.alg, f"{out[0]}.{out[1]}", sig):
            notes.append("carried signature verifies")
    return Resigned(vector, token, expect, why, notes)


def _embedded_key_attack(vector: Vector, payload: str) -> Resigned:
    """The attacker signs with their own key and embeds its public JWK (under the victim's kid) in the header."""
    from tests.support.keys import SigningKey

    attacker = SigningKey.ec(vector.header.get("kid"), vector.alg) if vector.alg.startswith("ES") \
        else SigningKey.rsa(vector.header.get("kid"), algorithm=vector.alg)
    header = b64url(json.dumps({**vector.header, "jwk": attacker.public_jwk}).encode())
    sig = signature(attacker.private_key, vector.alg, f"{header}.{payload}".encode())
    return Resigned(vector, f"{header}.{payload}.{b64url(sig)}", False, "signed by the key embedded in the header")


def resign_cases() -> list[Resigned]:
    vectors = all_vectors()
    groups: dict[tuple[str, str, str], list[Vector]] = {}
    for vector in vectors:
        groups.setdefault((vector.source, vector.group, json.dumps(vector.public, sort_keys=True)), []).append(vector)
    cases = []
    for group in groups.values():
        for vector in group:
            case = resign(vector, group)
            if case is not None:
                cases.append(case)
    return cases
