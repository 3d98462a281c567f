"""DPoP (RFC 9449) as a resource server: a bound token is accepted only with a fresh proof of its key.

A DPoP-bound access token carries `cnf.jkt`, the RFC 7638 thumbprint of the
client's key.  Each request sends it as `Authorization: DPoP <token>` with
one `DPoP: <proof>` header: a JWT signed by that key over the request's
method and URI, the token's hash and a unique `jti` (§4.3).  The token may
come from the token cache; the proof is checked on every request, cheap
checks first, one signature verification, then the replay store.  No
downgrade: a bound token sent as Bearer, or a proof with an unbound token,
is refused (§7.2).  Nonces (§8) are derived from a secret the replicas
share and the current time window, so any replica accepts any replica's.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import re
import time
from typing import Callable, Mapping, NamedTuple

from yarl import URL

from gateway import errors
from gateway.auth.identity import Identity
from gateway.auth.jwks_cache import construct_key, key_fits
from gateway.auth.replay_store import ReplayStore
from gateway.auth.verifier import base64url_decode, base64url_encode, parse_json_object, signature_verifies
from gateway.config.model import DpopSettings, ProviderConfig
from gateway.errors import DPOP

PROOF_TYP = "dpop+jwt"
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})  # RFC 7518 §6: never in a proof
THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
MAX_JTI_CHARS = 256
_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
_PROOF_KEYS_MAX = 4096  # verified proof headers kept (one per client key, usually)


def jwk_thumbprint(jwk: Mapping) -> str:
    """RFC 7638: SHA-256 over the key's required members, sorted, without whitespace; base64url."""
    members = THUMBPRINT_MEMBERS.get(jwk.get("kty"))
    if members is None or not all(isinstance(jwk.get(name), str) for name in members):
        raise ValueError("the JWK lacks the members its thumbprint is made of")
    text = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False)
    return base64url_encode(hashlib.sha256(text.encode()).digest())


def access_token_hash(token: str) -> str:
    """`ath` (§4.2): base64url(SHA-256(ASCII(token)))."""
    return base64url_encode(hashlib.sha256(token.encode("ascii")).digest())


@functools.lru_cache(maxsize=1024)  # bounded; a client's proofs, and requests to one endpoint, repeat their URI
def normalized_uri(uri: str) -> str | None:
    """An absolute http(s) URI without query and fragment, normalised per RFC 3986 §6.2.2 and §6.2.3.

    Scheme and host lower-cased, percent-encodings of unreserved characters decoded and the rest
    upper-cased, dot segments removed, the default port dropped and an empty path made "/" (yarl's
    own normalisation).  None when it is not such a URI.
    """
    try:
        url = URL(uri)
        if url.scheme not in ("http", "https") or not url.host or url.raw_user or url.raw_password:
            return None
        return f"{url.scheme}://{url.host_port_subcomponent}{url.raw_path or '/'}"
    except (ValueError, TypeError):
        return None


class Nonces:
    """§8 nonces: HMAC-SHA256 of the time window under the shared secret, good for their window and the next.

    The key rotates with the window, with nothing stored and nothing to coordinate: replicas with
    the same secret (and clocks within a window of each other) issue and accept the same nonces.
    """

    def __init__(self, secret: bytes, lifetime: float, clock: Callable[[], float] = time.time):
        self.secret = secret
        self.lifetime = lifetime
        self.clock = clock
        self._made: dict[int, str] = {}

    def _for(self, window: int) -> str:
        nonce = self._made.get(window)
        if nonce is None:
            counter = window.to_bytes(8, "big", signed=True)
            mac = hmac.new(self.secret, b"gateway dpop nonce " + counter, hashlib.sha256).digest()[:18]
            nonce = base64url_encode(counter + mac)
            if len(self._made) > 4:
                self._made.clear()
            self._made[window] = nonce
        return nonce

    def current(self) -> str:
        return self._for(math.floor(self.clock() / self.lifetime))

    def accepts(self, nonce: object) -> bool:
        if not isinstance(nonce, str):
            return False
        window = math.floor(self.clock() / self.lifetime)
        given = nonce.encode("utf-8", "replace")
        return any(hmac.compare_digest(given, self._for(w).encode()) for w in (window, window - 1))


class ProofRequest(NamedTuple):
    """A token with what DPoP checks it against; a plain bearer request is just its token string."""

    token: str
    scheme: str  # BEARER or DPOP: how the Authorization header sent the token
    proofs: tuple[str, ...]  # the values of every DPoP header
    method: str
    uri: Callable[[], str]  # the request's URI as the client addressed it, without the query


class ProofKey(NamedTuple):
    """What a proof's header says, once checked: its algorithm, its key and the key's thumbprint."""

    algorithm: str
    key: object  # python-jose key built from the proof's jwk for exactly this algorithm
    jkt: str


def downgrade_refused() -> errors.Rejection:
    return errors.unauthorized("invalid_token", "this token is bound to a DPoP key: send it as 'Authorization: "
                                                "DPoP <token>' with a DPoP proof; it is never accepted as Bearer")


def check_unproven(identity: Identity) -> None:
    """A token sent without a proof: refused if it is DPoP-bound (token_binding is checked with the other
    bindings, auth/binding.py)."""
    if identity.jkt is not None:
        raise downgrade_refused()


class DpopChecker:
    """The gateway's DPoP checks: proof, nonce and replay store, for the providers that accept DPoP."""

    def __init__(self, settings: DpopSettings, replay: ReplayStore, clock: Callable[[], float] = time.time):
        self.max_proof_bytes = settings.max_proof_bytes
        self.replay = replay
        self.clock = clock
        self.nonces = Nonces(settings.nonce_secret, settings.nonce_lifetime, clock) if settings.nonce_secret else None
        # encoded proof header -> its key: a client signs every proof under the same header
        self._keys: dict[bytes, ProofKey] = {}

    async def check(self, identity: Identity, provider: ProviderConfig, request: ProofRequest) -> None:
        """The binding of a token that came with a DPoP header or the DPoP scheme, proof and all (§4.3, §7)."""
        if request.scheme != DPOP:
            if identity.jkt is not None:
                raise downgrade_refused()
            raise errors.unauthorized("invalid_token", "a DPoP proof came with a bearer token; a DPoP proof "
                                                       "goes with 'Authorization: DPoP <token>' and a bound token")
        if identity.jkt is None:
            raise errors.unauthorized("invalid_token", "the token is not DPoP-bound (it has no cnf.jkt); "
                                                       "send it as 'Authorization: Bearer <token>' without a proof")
        policy = provider.dpop
        if policy is None:
            raise errors.unauthorized("invalid_token", f"DPoP-bound tokens of provider {provider.name!r} are not "
                                                       "accepted (its configuration has no dpop:)")
        found, claims = read_proof(request.proofs, policy.algorithms, self.max_proof_bytes, identity.jkt, self._keys)
        now = self.clock()
        iat = check_proof_claims(claims, request.method, request.uri(), request.token, policy.max_age,
                                 provider.leeway, now)
        if policy.nonce and not self.nonces.accepts(claims.get("nonce")):
            raise errors.use_dpop_nonce(self.nonces.current(), "this resource needs a DPoP proof with the nonce "
                                                                "given in the DPoP-Nonce header")
        key = replay_key(found.jkt, claims["jti"])
        if not await self.replay.first_use(key, max(1.0, iat + policy.max_age + provider.leeway - now)):
            raise errors.invalid_dpop_proof("this DPoP proof was already used (jti seen before); "
                                            "make a new proof for every request")


def check_proof_claims(claims: dict, method: str, uri: str, token: str | None, max_age: float, leeway: float,
                       now: float) -> float:
    """htm, htu, iat, jti and ath (§4.3 steps 8-12; no ath where no token is presented); returns iat."""
    if claims.get("htm") != method:
        raise errors.invalid_dpop_proof(f"the DPoP proof's htm must be the request method {method}")
    htu = claims.get("htu")
    expected = normalized_uri(uri)
    if not isinstance(htu, str) or expected is None or normalized_uri(htu) != expected:
        raise errors.invalid_dpop_proof(f"the DPoP proof's htu must be the URI this request was sent to, "
                                        f"{expected or 'unknown'}, without query and fragment")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not math.isfinite(iat):
        raise errors.invalid_dpop_proof("the DPoP proof's iat must be a number of seconds since the epoch")
    if iat > now + leeway:
        raise errors.invalid_dpop_proof("the DPoP proof was issued in the future (iat); check the client's clock")
    if now - iat > max_age + leeway:
        raise errors.invalid_dpop_proof(f"the DPoP proof is older than {max_age:g} seconds (iat); "
                                        "make a new proof for every request")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
        raise errors.invalid_dpop_proof(f"the DPoP proof needs a jti: a unique string of at most "
                                        f"{MAX_JTI_CHARS} characters")
    if token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath.encode(), access_token_hash(token).encode()):
            raise errors.invalid_dpop_proof("the DPoP proof's ath must be the base64url SHA-256 of this access token")
    return float(iat)


def replay_key(jkt: str, jti: str) -> bytes:
    """What the replay store remembers of a proof: its jti, per client key (one client cannot burn another's)."""
    return hashlib.sha256(f"{jkt}\0{jti}".encode()).digest()[:16]


def read_proof(proofs: tuple[str, ...] | list[str], algorithms: tuple[str, ...], max_bytes: int,
               expected_jkt: str | None = None, known: dict[bytes, ProofKey] | None = None) -> tuple[ProofKey, dict]:
    """The one proof among `proofs`, its signature verified with its own jwk: (its key, its claims, unchecked).

    `expected_jkt`: the key the token is bound to, compared before the signature is checked.
    `known`: verified headers by their encoded bytes (a client signs every proof under one header).
    """
    if not proofs:
        raise errors.invalid_dpop_proof("the DPoP scheme needs a DPoP header with a proof")
    if len(proofs) > 1:
        raise errors.invalid_dpop_proof("more than one DPoP header; send exactly one proof")
    proof = proofs[0]
    if len(proof) > max_bytes:
        raise errors.invalid_dpop_proof(f"the DPoP proof is longer than {max_bytes} bytes")
    if _JWS.match(proof) is None:
        raise errors.invalid_dpop_proof("the DPoP proof is not a signed JWT: expected three base64url parts")
    data = proof.encode("ascii")
    encoded_header, _, rest = data.partition(b".")
    encoded_payload, _, encoded_signature = rest.partition(b".")
    found = known.get(encoded_header) if known is not None else None
    if found is None:
        found = _proof_key(_decoded_json(encoded_header, "header"), algorithms)
    elif found.algorithm not in algorithms:
        raise _algorithm_refused(found.algorithm, algorithms)
    if expected_jkt is not None and found.jkt != expected_jkt:
        raise errors.unauthorized("invalid_token", "the DPoP proof is signed by a key other than the one "
                                                   "the token is bound to (cnf.jkt)")
    signing_input = data[:len(encoded_header) + 1 + len(encoded_payload)]
    try:
        verified = signature_verifies(found.key, signing_input, base64url_decode(encoded_signature))
    except Exception:  # InvalidSignature, or a malformed signature: never a 500
        verified = False
    if not verified:
        raise errors.invalid_dpop_proof("the DPoP proof's signature does not verify with its jwk")
    if known is not None and encoded_header not in known:
        if len(known) >= _PROOF_KEYS_MAX:
            known.clear()
        known[encoded_header] = found
    return found, _decoded_json(encoded_payload, "payload")


def _decoded_json(part: bytes, what: str) -> dict:
    try:
        return parse_json_object(base64url_decode(part), what, "invalid_dpop_proof")
    except ValueError:  # bad base64
        raise errors.invalid_dpop_proof(f"the DPoP proof's {what} is not base64url") from None
    except errors.Rejection as rejection:
        raise errors.invalid_dpop_proof(f"DPoP proof: {rejection.description}") from None


def _algorithm_refused(algorithm: object, allowed: tuple[str, ...]) -> errors.Rejection:
    return errors.invalid_dpop_proof(f"DPoP proof algorithm {algorithm!r} is not accepted; "
                                     f"use one of {', '.join(allowed)}")


def _proof_key(header: dict, allowed: tuple[str, ...]) -> ProofKey:
    """typ, alg and the public jwk of a proof header (§4.3 steps 4-6), the key built by python-jose."""
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() != PROOF_TYP:
        raise errors.invalid_dpop_proof(f"the DPoP proof's typ must be {PROOF_TYP!r}")
    if "crit" in header:
        raise errors.invalid_dpop_proof("the DPoP proof lists critical extensions this gateway does not implement")
    algorithm = header.get("alg")
    if algorithm not in allowed:  # "none", HS256 and other symmetric algorithms too
        raise _algorithm_refused(algorithm, allowed)
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise errors.invalid_dpop_proof("the DPoP proof's header needs a jwk: the client's public key")
    if not PRIVATE_MEMBERS.isdisjoint(jwk):
        raise errors.invalid_dpop_proof("the DPoP proof's jwk holds private key material; send the public key only")
    if not key_fits(jwk, algorithm):
        raise errors.invalid_dpop_proof(f"the DPoP proof's jwk (kty {jwk.get('kty')!r}) does not fit alg {algorithm!r}")
    built, problem = construct_key(jwk, [algorithm], "the DPoP proof's jwk")
    if problem:
        raise errors.invalid_dpop_proof(problem)
    return ProofKey(algorithm, built[algorithm], jwk_thumbprint(jwk))
