"""Token attacks sent over raw sockets: every malformed, forged or odd token is a 401 JSON, never a 500.

Tokens are signed with real keys (python-jose, or `forge.sign_raw` for bytes
jose would never emit), and the JWKS server counts every fetch, so "never
fetched" and "never used" are measured, not assumed.
"""
import base64
import datetime
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.security.forge import sign_raw
from tests.security.stack import assert_refused, echoed, running_stack
from tests.support.keys import ISSUER, SigningKey, b64url, claims, unsigned_token

HEADER = {"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}


def raw_claims(**overrides) -> bytes:
    return json.dumps({**claims("read:user"), **overrides}).encode()


async def expect_401(stack, token, code=None, path="/user/x"):
    hits = stack.echo.hits
    body = assert_refused(await stack.get(path, token=token), 401, code)
    assert stack.echo.hits == hits  # refused tokens never reach the upstream
    return body


# -- structure and JSON --------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["header", "payload"])
async def test_deeply_nested_json_is_401(stack, where):
    deep = b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}"
    header = deep[:-1] + b',"alg":"RS256","kid":"rsa-1"}' if where == "header" else json.dumps(HEADER).encode()
    payload = deep[:-1] + b',' + raw_claims()[1:] if where == "payload" else raw_claims()
    token = sign_raw(stack.rsa_key.private_key, "RS256", header, payload)
    await expect_401(stack, token)


@pytest.mark.parametrize("where", ["header", "payload"])
async def test_duplicate_keys_are_401(stack, where):
    """Two readers must never see two different tokens: `{"alg":"none","alg":"RS256"}` is refused."""
    header = b'{"alg":"none","kid":"rsa-1","alg":"RS256"}' if where == "header" else json.dumps(HEADER).encode()
    payload = raw_claims()[:-1] + b',"scope":"read:admin"}' if where == "payload" else raw_claims()
    token = sign_raw(stack.rsa_key.private_key, "RS256", header, payload)
    await expect_401(stack, token, path="/admin/x")


async def test_nested_duplicate_keys_are_401(stack):
    payload = raw_claims()[:-1] + b',"ext":{"role":"user","role":"admin"}}'
    await expect_401(stack, sign_raw(stack.rsa_key.private_key, "RS256", HEADER, payload))


NOT_OBJECTS = {"array": b"[]", "string": b'"x"', "null": b"null", "number": b"1", "empty": b"",
               "garbage": b"\xff\xfe{", "trailing data": b'{"alg":"RS256"} x', "nan literal": b"NaN"}


@pytest.mark.parametrize("case", sorted(NOT_OBJECTS))
@pytest.mark.parametrize("where", ["header", "payload"])
async def test_header_and_payload_must_be_json_objects(stack, where, case):
    raw = NOT_OBJECTS[case]
    header, payload = (raw, raw_claims()) if where == "header" else (json.dumps(HEADER).encode(), raw)
    token = b64url(header) + "." + b64url(payload) + "." + b64url(b"s" * 256)
    if not b64url(header) or not b64url(payload):
        token = token.replace("..", ".A.")
    await expect_401(stack, token)


CLAIM_TYPES = {
    "exp string": {"exp": "9999999999"}, "exp bool": {"exp": True}, "exp list": {"exp": [9999999999]},
    "exp object": {"exp": {"$date": 1}}, "exp null": {"exp": None}, "exp nan": {"exp": float("nan")},
    "exp infinity": {"exp": float("inf")}, "exp huge int": {"exp": 10 ** 400}, "exp huge float": {"exp": 1e308 * 10},
    "nbf string": {"nbf": "0"}, "nbf nan": {"nbf": float("nan")}, "nbf huge": {"nbf": -(10 ** 400)},
    "iat string": {"iat": "0"}, "iat huge": {"iat": 10 ** 400}, "iat -inf": {"iat": float("-inf")},
    "aud int": {"aud": 1}, "aud list of int": {"aud": [1]}, "aud empty list": {"aud": []},
    "aud object": {"aud": {"https://api.example.test": True}}, "aud null": {"aud": None},
    "iss list": {"iss": [ISSUER]}, "iss int": {"iss": 1}, "iss null": {"iss": None},
    "iss with space": {"iss": ISSUER + " "}, "sub int": {"sub": 1}, "sub object": {"sub": {"id": "a"}},
}


@pytest.mark.parametrize("case", sorted(CLAIM_TYPES))
async def test_claim_types_are_checked_and_401_not_500(stack, case):
    body = json.dumps({**claims("read:user"), **CLAIM_TYPES[case]}).encode()
    await expect_401(stack, sign_raw(stack.rsa_key.private_key, "RS256", HEADER, body))


async def test_scopes_are_split_on_spaces_only(stack):
    """RFC 6749 §3.3: scope tokens are separated by SP. Other whitespace must not mint new scopes."""
    for separator in ("\u00a0", "\u2003", "\x1f", "\x85", "\u3000"):
        answer = await stack.get("/admin/x", token=stack.token(f"read:user{separator}read:admin"))
        assert answer.status in (401, 403), (repr(separator), answer.status)
    assert stack.echo.hits == 0
    assert (await stack.get("/admin/x", token=stack.token("read:user  read:admin "))).status == 200


async def test_a_listed_scope_with_a_space_cannot_become_two_in_x_auth_scopes(stack):
    """`scp: ["read:user read:admin"]` is one odd scope to the gateway but two to an upstream splitting the header."""
    await expect_401(stack, stack.token(scp=["read:user read:admin"]), "invalid_claims")


# -- header parameters ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "exp", [1], ["http://example.test/ext"]])
async def test_crit_is_refused(stack, crit):
    token = stack.rsa_key.sign(claims(), headers={"crit": crit, "exp": 1})
    await expect_401(stack, token, "invalid_header")


ALGS = ["none", "None", "NONE", "nOnE", "HS256", "HS384", "HS512", "RS256 ", " RS256", "rs256", "PS256", "ES256K",
        "EdDSA", "RSA-OAEP", "dir", ""]


@pytest.mark.parametrize("alg", ALGS)
async def test_algorithms_not_configured_are_refused(stack, alg):
    header = {"alg": alg, "kid": "rsa-1"}
    await expect_401(stack, unsigned_token(header, claims("read:user"), b"x" * 256))


async def test_alg_of_wrong_type_is_refused(stack):
    for alg in (["RS256"], {"RS256": 1}, 256, None, True):
        await expect_401(stack, unsigned_token({"alg": alg, "kid": "rsa-1"}, claims(), b"x" * 256))


async def test_jwe_and_json_serialization_are_401(stack):
    jwe = ".".join(b64url(part) for part in (b'{"alg":"RSA-OAEP","enc":"A256GCM"}', b"k" * 256, b"iv" * 6,
                                              b"ct" * 20, b"tag" * 5))
    body = await expect_401(stack, jwe, "invalid_header")
    assert "JWE" in body["description"]
    token = stack.token("read:user")
    h, p, s = token.split(".")
    for serialized in (json.dumps({"payload": p, "protected": h, "signature": s}),
                       json.dumps({"payload": p, "signatures": [{"protected": h, "signature": s}]})):
        assert_refused(await stack.request("GET", "/user/x", [("Authorization", "Bearer " + serialized)]), 401)
    assert stack.echo.hits == 0


async def test_unsigned_and_truncated_signatures(stack):
    token = stack.token("read:user")
    h, p, s = token.split(".")
    for bad in (f"{h}.{p}.", f"{h}.{p}", f"{h}.{p}.{s[:-4]}", f"{h}.{p}.{s}AAAA", f"{h}.{p}.{s[::-1]}",
                f"{h}.{p}.A", f"{h}.{p}.{'A' * len(s)}"):
        await expect_401(stack, bad)


# -- keys ----------------------------------------------------------------------------------------------------

async def test_rsa_keys_below_2048_bits_are_never_used(rsa_key, ec_key):
    weak = SigningKey.rsa("weak", bits=1024)
    async with running_stack(rsa_key, ec_key, extra_jwks=[weak.public_jwk]) as stack:
        await expect_401(stack, weak.sign(claims("read:user")), "invalid_signature")
        assert (await stack.get("/user/x", token=stack.token())).status == 200


async def test_keys_published_for_other_uses_or_twice_are_never_used(rsa_key, ec_key):
    """use=enc, key_ops without verify (RFC 7517 §4.2-4.3), an alg that is not the token's, a kid published twice."""
    misused = {name: SigningKey.rsa(name) for name in ("enc", "ops", "ops-str", "alg", "twice")}
    other_twice, verify_only = SigningKey.rsa("twice"), SigningKey.rsa("verify-ok")
    jwks = [{**verify_only.public_jwk, "key_ops": ["verify"]}, {**misused["enc"].public_jwk, "use": "enc"},
            {**misused["ops"].public_jwk, "key_ops": ["encrypt", "wrapKey"]},
            {**misused["ops-str"].public_jwk, "key_ops": "verify"},
            {**misused["alg"].public_jwk, "alg": "RS512"},
            misused["twice"].public_jwk, other_twice.public_jwk]
    async with running_stack(rsa_key, ec_key, extra_jwks=jwks) as stack:
        for key in (*misused.values(), other_twice):
            await expect_401(stack, key.sign(claims("read:user")), "invalid_signature")
        assert (await stack.get("/user/x", token=verify_only.sign(claims()))).status == 200


ORDER_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.mark.parametrize("r,s", [(0, 0), (0, 1), (1, 0), (0, None), (None, 0), (ORDER_P256, None),
                                 (None, ORDER_P256), (ORDER_P256, ORDER_P256), (1, 1)])
async def test_es256_degenerate_signatures_are_refused(stack, r, s):
    token = stack.token("read:user", key=stack.ec_key)
    h, p, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    real_r, real_s = raw[:32], raw[32:]
    new = (real_r if r is None else r.to_bytes(32, "big")) + (real_s if s is None else s.to_bytes(32, "big"))
    await expect_401(stack, f"{h}.{p}.{b64url(new)}", "invalid_signature")


async def test_es256_signature_of_wrong_length_is_refused(stack):
    token = stack.token("read:user", key=stack.ec_key)
    h, p, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    for bad in (raw[:-1], raw + b"\x00", b"\x00" + raw, raw[:32], raw * 2, b""):
        await expect_401(stack, f"{h}.{p}.{b64url(bad) or 'A'}")


# -- kid, jku, x5u, jwk, x5c ---------------------------------------------------------------------------------

def _self_signed_cert_der(key: SigningKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.private_key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key.private_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


async def test_kid_is_an_opaque_lookup_key_never_a_path_or_url(stack, trap):
    attacker = SigningKey.rsa("x")
    fetches = stack.provider.fetches
    kids = ["../../../../etc/passwd", "/etc/passwd", "file:///etc/passwd", f"{trap.url}/jwks.json",
            f"//127.0.0.1:{trap.port}/k", "?kid=rsa-1", "rsa-1/../rsa-1", "rsa-1\u0000", "rsa-1 ", "RSA-1",
            "' OR '1'='1", "${jndi:ldap://127.0.0.1/a}", "k" * 4000]
    for kid in kids:
        await expect_401(stack, attacker.sign(claims("read:user"), headers={"kid": kid}), "invalid_signature")
    assert trap.hits == 0
    assert stack.provider.fetches - fetches <= 1  # one shared unknown-kid refresh at most, and only our JWKS


async def test_key_carrying_headers_are_never_used(stack, trap):
    """jku/x5u would make us fetch, jwk/x5c would hand us the attacker's key: all are ignored."""
    attacker = SigningKey.rsa("rsa-1")
    fetches = stack.provider.fetches
    cert = base64.b64encode(_self_signed_cert_der(attacker)).decode()
    headers = [{"jku": f"{trap.url}/jwks.json"}, {"x5u": f"{trap.url}/cert.pem"}, {"jwk": attacker.public_jwk},
               {"x5c": [cert]}, {"jku": f"{trap.url}/jwks.json", "jwk": attacker.public_jwk, "x5c": [cert],
                                 "x5u": f"{trap.url}/c", "x5t": "AAAA", "x5t#S256": "AAAA"}]
    for extra in headers:
        await expect_401(stack, attacker.sign(claims("read:admin"), headers=extra), "invalid_signature")
        # the same headers on a genuinely signed token are simply ignored: accepted, nothing fetched
        assert echoed(await stack.get("/user/x", token=stack.rsa_key.sign(claims("read:user"), headers=extra)))
    assert trap.hits == 0
    assert stack.provider.fetches == fetches


async def test_embedded_jwk_with_matching_kid_and_no_kid(stack):
    attacker = SigningKey.rsa(None)
    for header in ({"jwk": attacker.public_jwk}, {"kid": "rsa-1", "jwk": {**attacker.public_jwk, "kid": "rsa-1"}}):
        await expect_401(stack, attacker.sign(claims("read:admin"), headers=header), "invalid_signature")


async def test_hs256_signed_with_the_published_key_material(stack):
    """Algorithm confusion: HMAC keyed with the RSA public key's PEM or JWK bytes."""
    import hashlib
    import hmac

    for secret in (stack.rsa_key.public_pem().encode(), json.dumps(stack.rsa_key.public_jwk).encode(),
                   base64.urlsafe_b64decode(stack.rsa_key.public_jwk["n"] + "==")):
        unsigned = b64url(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()) + "." + b64url(raw_claims())
        mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
        await expect_401(stack, unsigned + "." + b64url(mac), "invalid_header")


async def test_expired_by_a_second_beyond_leeway_and_valid_inside_it(stack):
    now = int(time.time())
    assert (await stack.get("/user/x", token=stack.token(exp=now - 5))).status == 200  # default leeway is 30 s
    await expect_401(stack, stack.token(exp=now - 3600), "token_expired")
