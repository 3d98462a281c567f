"""DPoP (RFC 9449) through a real gateway: bound tokens with proofs made by joserfc, every refusal exact.

The access tokens are signed by the test provider's key and bound with `cnf.jkt`; the proofs come
from `dpop_client` (joserfc).  Each refusal is checked with its status, JSON code and every
WWW-Authenticate challenge, and refused requests never reach the upstream.
"""
from __future__ import annotations

import time

import pytest
from joserfc.jwk import RSAKey

from gateway.auth.dpop import Nonces, jwk_thumbprint, normalized_uri
from gateway.auth.replay_store import MemoryReplayStore
from gateway import errors
from gateway.config.loader import ConfigError, build_config
from gateway.config.yaml_source import load_located
from tests.security.dpop_client import DpopKey, ath
from tests.security.forge import sign_raw
from tests.security.stack import ROUTES, assert_refused, echoed, header_values, running_stack
from tests.support.config import REPO, config_text, provider_yaml
from tests.support.keys import unsigned_token

URL = "http://gw.test/user/profile"
LEEWAY = 30  # the provider default
MAX_AGE = 60
DPOP_PROVIDER = f"""\
dpop:
  algorithms: [ES256, RS256]
  max_age: {MAX_AGE}
"""
ALGS = 'algs="ES256 RS256"'
BOTH_MISSING = ['Bearer realm="api"', f'DPoP realm="api", {ALGS}']


def dpop_error(error: str, description: str) -> str:
    return f'DPoP realm="api", error="{error}", error_description="{description}", {ALGS}'


@pytest.fixture(scope="module")
def client_key() -> DpopKey:
    return DpopKey("ES256")


@pytest.fixture(scope="module")
def thief_key() -> DpopKey:
    return DpopKey("ES256")


@pytest.fixture
async def stack(rsa_key, ec_key):
    async with running_stack(rsa_key, ec_key, provider_extra=DPOP_PROVIDER) as running:
        yield running


def bound(stack, key: DpopKey, **extra) -> str:
    return stack.token("read:user", cnf={"jkt": key.jkt}, **extra)


async def dpop_get(stack, token: str, proofs: list[str], path: str = "/user/profile", scheme: str = "DPoP",
                   headers: list[tuple[str, str]] = ()):
    sent = [("Authorization", f"{scheme} {token}"), *[("DPoP", proof) for proof in proofs], *headers]
    return await stack.request("GET", path, sent)


async def refused(stack, answer, status: int, code: str, challenges: list[str]) -> dict:
    hits = stack.echo.hits
    body = assert_refused(answer, status, code)
    assert header_values({"headers": answer.headers}, "WWW-Authenticate") == challenges
    assert stack.echo.hits == hits
    return body


# -- building blocks ------------------------------------------------------------------------------------------

def test_thumbprint_of_the_rfc7638_example_key():
    """RFC 7638 §3.1: the RSA key and its thumbprint, as printed there."""
    key = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV"
             "4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0"
             "zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
             "Cur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert jwk_thumbprint(key) == RSAKey.import_key(key).thumbprint()  # and joserfc agrees


def test_thumbprint_of_an_ec_key_agrees_with_joserfc(client_key):
    assert jwk_thumbprint({**client_key.public, "kid": "ignored", "use": "sig"}) == client_key.jkt


@pytest.mark.parametrize("given, expected", [
    ("HTTP://GW.Test:80/user/profile", "http://gw.test/user/profile"),  # §6.2.2.1 case, §6.2.3 default port
    ("https://gw.test:443", "https://gw.test/"),  # §6.2.3: empty path is "/"
    ("https://gw.test:8443/a/./b/../c", "https://gw.test:8443/a/c"),  # §6.2.2.3 dot segments
    ("http://gw.test/%7euser/%2fx%c3%a9", "http://gw.test/~user/%2Fx%C3%A9"),  # §6.2.2.1/6.2.2.2 percent-encoding
    ("http://gw.test/user?q=1#frag", "http://gw.test/user"),  # query and fragment are not part of htu
    ("http://[::1]:80/p", "http://[::1]/p"),
    ("ftp://gw.test/user", None), ("/user/profile", None), ("http://u:p@gw.test/", None), ("http://", None),
])
def test_uris_are_normalised_per_rfc3986(given, expected):
    assert normalized_uri(given) == expected


def test_nonces_are_shared_by_replicas_with_the_same_secret_and_rotate_with_the_window():
    now = [1_000_000.0]
    one, two = (Nonces(b"s" * 32, 60, lambda: now[0]) for _ in range(2))
    other = Nonces(b"t" * 32, 60, lambda: now[0])
    nonce = one.current()
    assert two.accepts(nonce) and two.current() == nonce and not other.accepts(nonce)
    now[0] += 60  # the next window: still good, and a new one is issued
    assert two.accepts(nonce) and two.current() != nonce
    now[0] += 60
    assert not two.accepts(nonce)
    assert not one.accepts(None) and not one.accepts(nonce + "x")


async def test_a_full_memory_store_refuses_instead_of_forgetting():
    now = [0.0]
    store = MemoryReplayStore(2, clock=lambda: now[0])
    assert await store.first_use(b"a", 10) and await store.first_use(b"b", 10)
    assert not await store.first_use(b"a", 10)
    with pytest.raises(errors.Rejection) as refused_:
        await store.first_use(b"c", 10)
    assert (refused_.value.status, refused_.value.code) == (503, "replay_store_unavailable")
    now[0] = 11  # both expired: room again, and "a" may be used again (its proof is too old by now)
    assert await store.first_use(b"c", 10) and await store.first_use(b"a", 10)


# -- accepted -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
async def test_a_bound_token_with_its_proof_is_forwarded_with_the_binding_header(stack, algorithm):
    key = DpopKey(algorithm)
    token = bound(stack, key)
    answer = await dpop_get(stack, token, [key.proof("GET", URL, token)])
    assert answer.status == 200, answer.body
    seen = echoed(answer)
    assert header_values(seen, "X-Auth-Binding") == ["dpop"]
    assert header_values(seen, "DPoP") == [] and header_values(seen, "Authorization") == []


async def test_the_proof_is_checked_on_every_request_even_when_the_token_is_cached(stack, client_key):
    token = bound(stack, client_key)
    proof = client_key.proof("GET", URL, token)
    assert (await dpop_get(stack, token, [proof])).status == 200
    assert (await dpop_get(stack, token, [client_key.proof("GET", URL, token)])).status == 200  # a cache hit
    assert stack.gateway.token_cache.hits >= 1
    await refused(stack, await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof",
                  ['Bearer realm="api"', dpop_error("invalid_dpop_proof", "this DPoP proof was already used (jti "
                                                    "seen before); make a new proof for every request")])


async def test_htu_is_compared_after_normalisation_and_without_the_query(stack, client_key):
    token = bound(stack, client_key)
    proof = client_key.proof("GET", "HTTP://GW.TEST:80/user/./profile?ignored=1#frag", token)
    answer = await dpop_get(stack, token, [proof], path="/user/profile?x=1")
    assert answer.status == 200, answer.body


async def test_a_plain_bearer_token_still_works_beside_dpop_and_cannot_claim_a_binding(stack):
    forged = [("X-Auth-Binding", "dpop"), ("x_auth_binding", "dpop")]
    answer = await stack.get("/user/profile", headers=forged, token=stack.token("read:user"))
    assert answer.status == 200
    seen = echoed(answer)
    assert header_values(seen, "X-Auth-Binding") == header_values(seen, "x_auth_binding") == []


# -- refusals: scheme and binding ------------------------------------------------------------------------------

async def test_a_bound_token_sent_as_bearer_is_refused(stack, client_key):
    """§7.2: no downgrade; both schemes are accepted on the route, so both challenges come back."""
    token = bound(stack, client_key)
    description = ("this token is bound to a DPoP key: send it as 'Authorization: DPoP <token>' "
                   "with a DPoP proof; it is never accepted as Bearer")
    for _ in range(2):  # verified, then from the token cache
        await refused(stack, await stack.get("/user/profile", token=token), 401, "invalid_token",
                      [f'Bearer realm="api", error="invalid_token", error_description="{description}"',
                       f'DPoP realm="api", {ALGS}'])


async def test_a_bound_token_sent_as_bearer_with_its_proof_is_refused(stack, client_key):
    token = bound(stack, client_key)
    answer = await dpop_get(stack, token, [client_key.proof("GET", URL, token)], scheme="Bearer")
    await refused(stack, answer, 401, "invalid_token",
                  ['Bearer realm="api", error="invalid_token", error_description="this token is bound to a DPoP '
                   "key: send it as 'Authorization: DPoP <token>' with a DPoP proof; it is never accepted as Bearer\"",
                   f'DPoP realm="api", {ALGS}'])


async def test_a_proof_with_an_unbound_token_is_refused(stack, client_key):
    token = stack.token("read:user")
    answer = await dpop_get(stack, token, [client_key.proof("GET", URL, token)])
    await refused(stack, answer, 401, "invalid_token",
                  ['Bearer realm="api"', dpop_error("invalid_token", "the token is not DPoP-bound (it has no "
                   "cnf.jkt); send it as 'Authorization: Bearer <token>' without a proof")])
    answer = await dpop_get(stack, token, [client_key.proof("GET", URL, token)], scheme="Bearer")
    await refused(stack, answer, 401, "invalid_token",
                  ['Bearer realm="api", error="invalid_token", error_description="a DPoP proof came with a bearer '
                   "token; a DPoP proof goes with 'Authorization: DPoP <token>' and a bound token\"",
                   f'DPoP realm="api", {ALGS}'])


async def test_a_proof_by_another_key_is_refused(stack, client_key, thief_key):
    token = bound(stack, client_key)  # stolen: the thief signs proofs with their own key
    answer = await dpop_get(stack, token, [thief_key.proof("GET", URL, token)])
    await refused(stack, answer, 401, "invalid_token",
                  ['Bearer realm="api"', dpop_error("invalid_token", "the DPoP proof is signed by a key other than "
                                                    "the one the token is bound to (cnf.jkt)")])


async def test_a_proof_carrying_the_bound_key_but_signed_by_another_is_refused(stack, client_key, thief_key):
    token = bound(stack, client_key)
    forged = thief_key.proof("GET", URL, token, jwk=client_key.public)
    await refused(stack, await dpop_get(stack, token, [forged]), 401, "invalid_dpop_proof",
                  ['Bearer realm="api"', dpop_error("invalid_dpop_proof",
                                                    "the DPoP proof's signature does not verify with its jwk")])


async def test_missing_token_names_both_schemes(stack):
    await refused(stack, await stack.get("/user/profile"), 401, "authorization_header_missing", BOTH_MISSING)


# -- refusals: the proof itself --------------------------------------------------------------------------------

def _proof_error(description: str) -> list[str]:
    return ['Bearer realm="api"', dpop_error("invalid_dpop_proof", description)]


async def test_two_dpop_headers_are_refused(stack, client_key):
    token = bound(stack, client_key)
    proofs = [client_key.proof("GET", URL, token), client_key.proof("GET", URL, token)]
    await refused(stack, await dpop_get(stack, token, proofs), 401, "invalid_dpop_proof",
                  _proof_error("more than one DPoP header; send exactly one proof"))


async def test_the_dpop_scheme_without_a_proof_is_refused(stack, client_key):
    await refused(stack, await dpop_get(stack, bound(stack, client_key), []), 401, "invalid_dpop_proof",
                  _proof_error("the DPoP scheme needs a DPoP header with a proof"))


async def test_an_oversize_proof_is_refused(stack, client_key):
    token = bound(stack, client_key)
    proof = client_key.proof("GET", URL, token, claims={"padding": "x" * 4000})
    await refused(stack, await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof",
                  _proof_error("the DPoP proof is longer than 4096 bytes"))


@pytest.mark.parametrize("shape", ["extra part", "two parts", "JWE-like"])
async def test_a_proof_with_extra_or_missing_parts_is_refused(stack, client_key, shape):
    token = bound(stack, client_key)
    proof = client_key.proof("GET", URL, token)
    proof = {"extra part": proof + ".AAAA", "two parts": proof.rpartition(".")[0],
             "JWE-like": proof + ".AAAA.AAAA"}[shape]
    await refused(stack, await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof",
                  _proof_error("the DPoP proof is not a signed JWT: expected three base64url parts"))


@pytest.mark.parametrize("signer, header, description", [
    ("ES256", {"typ": "JWT"}, "the DPoP proof's typ must be 'dpop+jwt'"),
    ("RS256", {"alg": "RS512"}, "DPoP proof algorithm 'RS512' is not accepted; use one of ES256, RS256"),
])
async def test_proof_headers_are_checked(stack, client_key, signer, header, description):
    token = bound(stack, client_key)
    proof = (client_key if signer == "ES256" else DpopKey(signer)).proof("GET", URL, token, header=header)
    await refused(stack, await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof", _proof_error(description))


async def test_a_proof_with_critical_extensions_is_refused(stack, client_key):
    """joserfc will not sign an unknown crit, so this one is signed byte by byte (forge.sign_raw)."""
    token = bound(stack, client_key)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": client_key.public, "crit": ["exp"], "exp": 1}
    proof = sign_raw(client_key.key.private_key, "ES256", header,
                     {"jti": "crit", "htm": "GET", "htu": URL, "iat": int(time.time()), "ath": ath(token)})
    await refused(stack, await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof",
                  _proof_error("the DPoP proof lists critical extensions this gateway does not implement"))


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_symmetric_and_unsigned_proofs_are_refused(stack, client_key, alg):
    token = bound(stack, client_key)
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": client_key.public}
    proof = unsigned_token(header, {"jti": "x", "htm": "GET", "htu": URL, "iat": int(time.time()),
                                    "ath": ath(token)}, b"sig")
    await refused(stack, await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof",
                  _proof_error(f"DPoP proof algorithm '{alg}' is not accepted; use one of ES256, RS256"))


async def test_a_private_key_in_the_proof_is_refused(stack, client_key):
    token = bound(stack, client_key)
    proof = client_key.proof("GET", URL, token, jwk=client_key.key.as_dict(private=True))
    await refused(stack, await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof",
                  _proof_error("the DPoP proof's jwk holds private key material; send the public key only"))


async def test_a_proof_without_jwk_or_with_a_mismatched_one_is_refused(stack, client_key):
    token = bound(stack, client_key)
    header = {"typ": "dpop+jwt", "alg": "ES256"}
    no_jwk = unsigned_token(header, {"htm": "GET"}, b"sig")
    await refused(stack, await dpop_get(stack, token, [no_jwk]), 401, "invalid_dpop_proof",
                  _proof_error("the DPoP proof's header needs a jwk: the client's public key"))
    mismatched = unsigned_token({**header, "jwk": DpopKey("RS256").public}, {"htm": "GET"}, b"sig")
    await refused(stack, await dpop_get(stack, token, [mismatched]), 401, "invalid_dpop_proof",
                  _proof_error("the DPoP proof's jwk (kty 'RSA') does not fit alg 'ES256'"))


@pytest.mark.parametrize("change, description", [
    ({"claims": {"htm": "POST"}}, "the DPoP proof's htm must be the request method GET"),
    ({"claims": {"htm": "get"}}, "the DPoP proof's htm must be the request method GET"),
    ({"claims": {"htu": "http://gw.test/user/other"}}, "the DPoP proof's htu must be the URI this request was "
                                                       "sent to, http://gw.test/user/profile, without query and fragment"),
    ({"claims": {"htu": "https://gw.test/user/profile"}}, "the DPoP proof's htu must be the URI this request was "
                                                          "sent to, http://gw.test/user/profile, without query and "
                                                          "fragment"),
    ({"drop": ("htu",)}, "the DPoP proof's htu must be the URI this request was sent to, "
                         "http://gw.test/user/profile, without query and fragment"),
    ({"drop": ("jti",)}, "the DPoP proof needs a jti: a unique string of at most 256 characters"),
    ({"claims": {"jti": ""}}, "the DPoP proof needs a jti: a unique string of at most 256 characters"),
    ({"drop": ("iat",)}, "the DPoP proof's iat must be a number of seconds since the epoch"),
    ({"claims": {"iat": "now"}}, "the DPoP proof's iat must be a number of seconds since the epoch"),
    ({"drop": ("ath",)}, "the DPoP proof's ath must be the base64url SHA-256 of this access token"),
    ({"claims": {"ath": ath("another.token.altogether")}},
     "the DPoP proof's ath must be the base64url SHA-256 of this access token"),
])
async def test_proof_claims_are_checked(stack, client_key, change, description):
    token = bound(stack, client_key)
    proof = client_key.proof("GET", URL, token, **change)
    await refused(stack, await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof", _proof_error(description))


@pytest.mark.parametrize("offset, accepted", [
    (-(MAX_AGE + LEEWAY) + 3, True),  # just inside the window (seconds of margin for the test's own run time)
    (-(MAX_AGE + LEEWAY) - 3, False),
    (LEEWAY - 3, True),  # a client clock slightly ahead
    (LEEWAY + 3, False),
])
async def test_iat_window_edges(stack, client_key, offset, accepted):
    token = bound(stack, client_key)
    answer = await dpop_get(stack, token, [client_key.proof("GET", URL, token, iat=int(time.time()) + offset)])
    if accepted:
        assert answer.status == 200, answer.body
        return
    description = ("the DPoP proof was issued in the future (iat); check the client's clock" if offset > 0 else
                   f"the DPoP proof is older than {MAX_AGE} seconds (iat); make a new proof for every request")
    await refused(stack, answer, 401, "invalid_dpop_proof", _proof_error(description))


async def test_a_used_proof_stays_refused_however_it_is_dressed(stack, client_key):
    """A replayed jti is refused for the same key even if the rest of the proof is new."""
    token = bound(stack, client_key)
    assert (await dpop_get(stack, token, [client_key.proof("GET", URL, token, jti="once")])).status == 200
    answer = await dpop_get(stack, token, [client_key.proof("GET", URL, token, jti="once", iat=int(time.time()) - 1)])
    assert_refused(answer, 401, "invalid_dpop_proof")


async def test_an_expired_bound_token_is_invalid_token_on_the_dpop_challenge(stack, client_key):
    token = bound(stack, client_key, ttl=-LEEWAY - 5)
    answer = await dpop_get(stack, token, [client_key.proof("GET", URL, token)])
    await refused(stack, answer, 401, "token_expired",
                  ['Bearer realm="api"', dpop_error("invalid_token", "token is expired")])


# -- where the client addressed the gateway ---------------------------------------------------------------------

async def test_htu_behind_a_trusted_proxy_is_the_forwarded_origin(rsa_key, ec_key, client_key):
    async with running_stack(rsa_key, ec_key, provider_extra=DPOP_PROVIDER,
                             top_extra="clients:\n  trusted_proxies: [127.0.0.1/32]") as stack:
        token = bound(stack, client_key)
        forwarded = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "api.example.com, inner.proxy")]
        proof = client_key.proof("GET", "https://api.example.com/user/profile", token)
        assert (await dpop_get(stack, token, [proof], headers=forwarded)).status == 200
        inner = client_key.proof("GET", URL, token)  # the gateway's own name is not what the client used
        assert_refused(await dpop_get(stack, token, [inner], headers=forwarded), 401, "invalid_dpop_proof")


async def test_forwarded_headers_of_an_untrusted_peer_do_not_move_htu(stack, client_key):
    token = bound(stack, client_key)
    forwarded = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "api.example.com")]
    proof = client_key.proof("GET", "https://api.example.com/user/profile", token)
    body = assert_refused(await dpop_get(stack, token, [proof], headers=forwarded), 401, "invalid_dpop_proof")
    assert "http://gw.test/user/profile" in body["description"]


async def test_public_url_decides_htu(rsa_key, ec_key, client_key):
    async with running_stack(rsa_key, ec_key, provider_extra=DPOP_PROVIDER,
                             top_extra="public_url: https://API.example.com:443/") as stack:
        token = bound(stack, client_key)
        proof = client_key.proof("GET", "https://api.example.com/user/profile", token)
        assert (await dpop_get(stack, token, [proof])).status == 200
        assert_refused(await dpop_get(stack, token, [client_key.proof("GET", URL, token)]), 401, "invalid_dpop_proof")


# -- token_binding and providers without dpop ---------------------------------------------------------------------

async def test_token_binding_required_refuses_unbound_tokens_and_names_only_dpop(rsa_key, ec_key, client_key):
    async with running_stack(rsa_key, ec_key, provider_extra=DPOP_PROVIDER + "token_binding: required") as stack:
        description = ("provider 'test' accepts only sender-constrained tokens (token_binding: required); this token "
                       "has no cnf binding")
        await refused(stack, await stack.get("/user/profile", token=stack.token("read:user")), 401, "invalid_token",
                      [f'Bearer realm="api", error="invalid_token", error_description="{description}"',
                       f'DPoP realm="api", {ALGS}'])
        await refused(stack, await stack.get("/user/profile"), 401, "authorization_header_missing",
                      [f'DPoP realm="api", {ALGS}'])
        token = bound(stack, client_key)
        assert (await dpop_get(stack, token, [client_key.proof("GET", URL, token)])).status == 200


async def test_a_provider_without_dpop_refuses_bound_tokens_either_way(rsa_key, ec_key, client_key):
    async with running_stack(rsa_key, ec_key) as stack:
        token = bound(stack, client_key)
        answer = await dpop_get(stack, token, [client_key.proof("GET", URL, token)])
        await refused(stack, answer, 401, "invalid_token",
                      ['Bearer realm="api"', 'DPoP realm="api", error="invalid_token", error_description="DPoP-bound '
                       "tokens of provider 'test' are not accepted (its configuration has no dpop:)\""])
        assert_refused(await stack.get("/user/profile", token=token), 401, "invalid_token")


# -- nonces -------------------------------------------------------------------------------------------------------

NONCE_SECRET = "n" * 40


async def test_nonces_are_demanded_issued_and_accepted_by_a_replica_sharing_the_secret(rsa_key, ec_key, client_key):
    provider = DPOP_PROVIDER + "  nonce: true\n"
    top = f"dpop:\n  nonce_secret: {NONCE_SECRET}\n  nonce_lifetime: 300"
    async with running_stack(rsa_key, ec_key, provider_extra=provider, top_extra=top) as one, \
            running_stack(rsa_key, ec_key, provider_extra=provider, top_extra=top) as two:
        token = bound(one, client_key)
        answer = await dpop_get(one, token, [client_key.proof("GET", URL, token)])
        body = await refused(one, answer, 401, "use_dpop_nonce",
                             ['Bearer realm="api"', dpop_error("use_dpop_nonce", "this resource needs a DPoP proof "
                                                               "with the nonce given in the DPoP-Nonce header")])
        nonce = answer.header("DPoP-Nonce")
        assert nonce and body["code"] == "use_dpop_nonce"
        wrong = await dpop_get(one, token, [client_key.proof("GET", URL, token, nonce=nonce[:-2] + "AA")])
        assert_refused(wrong, 401, "use_dpop_nonce")
        accepted = await dpop_get(two, token, [client_key.proof("GET", URL, token, nonce=nonce)])
        assert accepted.status == 200, accepted.body
        assert accepted.header("DPoP-Nonce") == nonce  # successful answers carry the nonce to use next


# -- configuration -----------------------------------------------------------------------------------------------

def _load(provider_extra: str = "", top_extra: str = ""):
    """(the config, []) or (None, its problems)."""
    text = config_text("http://127.0.0.1:5000", provider_yaml("https://issuer.test/jwks", extra=provider_extra),
                       ROUTES, top_extra)
    try:
        return build_config(load_located(text, {}), "routes.yaml", REPO), []
    except ConfigError as exc:
        return None, exc.problems


def test_the_issue_configuration_loads_into_the_model():
    config, problems = _load(DPOP_PROVIDER + "  nonce: true\ntoken_binding: required",
                             f"dpop:\n  replay_store: redis://127.0.0.1:6379/0\n  nonce_secret: {'s' * 32}\n"
                             "public_url: https://api.example.com")
    assert problems == []
    provider = config.provider("test")
    assert (provider.dpop.algorithms, provider.dpop.max_age, provider.dpop.nonce) == (("ES256", "RS256"), 60, True)
    assert provider.token_binding == "required"
    assert (config.dpop.replay_store, config.dpop.nonce_secret) == ("redis://127.0.0.1:6379/0", b"s" * 32)
    assert config.public_url == "https://api.example.com" and "s" * 32 not in repr(config.dpop)
    plain, _ = _load()
    assert plain.provider("test").dpop is None and plain.provider("test").token_binding == "optional"
    assert plain.dpop.replay_store == "memory" and plain.public_url is None


@pytest.mark.parametrize("provider_extra, top_extra, problem", [
    ("dpop:\n  algorithms: [HS256]", "", "proof algorithm 'HS256' is not supported"),
    ("dpop:\n  algorithms: [none]", "", "proof algorithm 'none' is not supported"),
    ("dpop:\n  algoritms: [ES256]", "", "did you mean 'algorithms'?"),
    ("dpop:\n  nonce: true", "", "no nonce secret is configured; set dpop.nonce_secret"),
    ("", "dpop:\n  nonce_secret: short", "dpop.nonce_secret is too short"),
    ("", "dpop:\n  replay_store: redis:/nohost", "must be 'memory' or a Redis URL"),
    ("", "dpop:\n  replay_store: memcached://x:1", "must be 'memory' or a Redis URL"),
    ("", "public_url: https://api.example.com/v1", "must be an origin like https://api.example.com"),
    ("token_binding: always", "", "token_binding must be optional (bound tokens are checked, unbound accepted) or "
                                  "required (unbound refused), not 'always'"),
])
def test_bad_dpop_settings_are_refused_with_a_hint(provider_extra, top_extra, problem):
    _, problems = _load(provider_extra, top_extra)
    assert any(problem in p and p.startswith("routes.yaml:") for p in problems), problems



async def test_a_reload_does_not_make_a_used_proof_usable_again(stack, client_key):
    token = bound(stack, client_key)
    proof = client_key.proof("GET", URL, token)
    assert (await dpop_get(stack, token, [proof])).status == 200
    gateway = stack.gateway
    gateway.activate(gateway.config, gateway.caches, gateway.token_cache)  # what a reload of the same file does
    assert_refused(await dpop_get(stack, token, [proof]), 401, "invalid_dpop_proof")


async def test_a_token_bound_both_to_a_dpop_key_and_a_certificate_is_refused(stack, client_key):
    token = stack.token("read:user", cnf={"jkt": client_key.jkt, "x5t#S256": client_key.jkt})
    answer = await dpop_get(stack, token, [client_key.proof("GET", URL, token)])
    body = assert_refused(answer, 401, "invalid_token")
    assert "bound both to a DPoP key and to a certificate" in body["description"]
    malformed = stack.token("read:user", cnf={"jkt": "not-a-thumbprint"})
    assert "cnf.jkt must be the base64url SHA-256" in assert_refused(
        await dpop_get(stack, malformed, [client_key.proof("GET", URL, malformed)]), 401, "invalid_token")["description"]
