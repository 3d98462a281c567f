"""The cache-miss fast paths of gateway/auth/verifier.py decide exactly as the plain code they replace.

Each fast path (base64url decoding, the strict JSON parse with its duplicate-key and depth
checks, the direct `cryptography` signature check, the X-Auth-Scopes check) is compared with
a reference written the slow, obvious way: python-jose's own functions, or the verifier's
previous code, kept here.
"""
import base64
import json
import os
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jose import jwk
from jose.utils import base64url_decode

from gateway import errors
from gateway.auth import verifier as module
from gateway.auth.jwks_cache import JwksCache
from gateway.auth.verifier import (
    MAX_JSON_DEPTH, Verifier, base64url_decode, _scopes_header, granted_scopes, parse_json_object,
    signature_verifies, split_token,
)
from tests.support.config import config_text, provider_yaml, typed_config
from tests.support.keys import SigningKey, b64url, claims

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=bool(os.environ.get("CI")))


# -- base64url -------------------------------------------------------------------------------------------------

def _decoded(function, data: bytes):
    try:
        return function(data)
    except ValueError:  # binascii.Error
        return "refused"


@SETTINGS
@given(st.binary(max_size=200))
def test_base64url_encode_is_the_unpadded_urlsafe_base64_of_the_standard_library(raw):
    assert module.base64url_encode(raw) == base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@SETTINGS
@given(st.one_of(st.binary(max_size=64).map(lambda raw: b64url(raw).encode()),
                 st.text(alphabet=string.ascii_letters + string.digits + "-_+/=!. \n", max_size=40)
                 .map(str.encode)))
def test_base64url_decode_is_python_joses(data):
    assert _decoded(base64url_decode, data) == _decoded(base64url_decode, data)


# -- strict JSON -------------------------------------------------------------------------------------------------

def _reference_parse(raw: bytes):
    """The verifier's previous parser: a Python-loop duplicate check and a full depth walk every time."""
    def strict(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise ValueError("duplicate")
            result[key] = value
        return result

    def depth(value, level=1):
        if isinstance(value, dict):
            return max([level] + [depth(v, level + 1) for v in value.values()])
        if isinstance(value, list):
            return max([level] + [depth(v, level + 1) for v in value])
        return 0

    def constant(name):
        raise ValueError(name)

    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=strict, parse_constant=constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "refused"
    if not isinstance(value, dict) or depth(value) > MAX_JSON_DEPTH:
        return "refused"
    return value


def _parsed(raw: bytes):
    try:
        return parse_json_object(raw, "payload")
    except errors.Rejection as rejection:
        assert rejection.status == 401
        return "refused"


class Obj(list):
    """A JSON object as its list of (key, value) pairs, so that a key can come twice."""


def _dumps(value) -> str:
    if isinstance(value, Obj):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dumps(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet="ab{}[]\"\\", max_size=6),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.lists(st.tuples(st.sampled_from("abc"), inner), max_size=3).map(Obj),
                    max_leaves=12)


@st.composite
def json_texts(draw):
    """JSON objects with keys from "abc", often one repeated at some depth, sometimes nested past the limit."""
    text = _dumps(Obj(draw(st.lists(st.tuples(st.sampled_from("xyz"), JSON), max_size=3))))
    depth = draw(st.integers(0, MAX_JSON_DEPTH + 3))
    if depth:
        text = '{"d": ' + "[" * depth + "]" * depth + (", " if text != "{}" else "") + text[1:]
    return text.encode()


@SETTINGS
@given(json_texts())
def test_strict_json_decides_as_the_reference(raw):
    assert _parsed(raw) == _reference_parse(raw)


AROUND = [b"", b" ", b"\r\n\t", b"\xef\xbb\xbf", b"\x00", b"x", b"{}", b"1", b'"', b"\xff"]


@SETTINGS
@given(json_texts(), st.sampled_from(AROUND), st.sampled_from(AROUND))
@example(b"{}", b"", b" ")
@example(b"{}", b"\xef\xbb\xbf", b"")
@example(b'{"a":1}', b"", b"{}")
def test_strict_json_with_anything_around_it_decides_as_the_reference(raw, before, after):
    """The scan from the first character (the fast path) hands whitespace, a BOM and extra data to the full reader."""
    raw = before + raw + after
    assert _parsed(raw) == _reference_parse(raw)


@pytest.mark.parametrize("depth, accepted", [(MAX_JSON_DEPTH, True), (MAX_JSON_DEPTH + 1, False)])
def test_depth_limit_is_exact(depth, accepted):
    # the object itself is level 1: depth - 1 nested lists inside it
    raw = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    assert (_parsed(raw) != "refused") is accepted
    raw = b'{"a":' + b'{"b":' * (depth - 1) + b"1" + b"}" * (depth - 1) + b"}"
    assert (_parsed(raw) != "refused") is accepted


def test_brackets_inside_strings_are_not_nesting():
    raw = json.dumps({"s": "[" * 100 + "{" * 100, "t": ["{[" * 50]}).encode()
    assert _parsed(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [b'{"a":1,"a":1}', b'{"a":{"b":1,"c":2,"b":3}}', b'{"a":[{"k":1},{"k":1,"k":2}]}',
                                 b'{"a":1,"b":2,"c":3,"a":4}'])
def test_duplicate_keys_anywhere_are_refused(raw):
    with pytest.raises(errors.Rejection) as caught:
        parse_json_object(raw, "payload")
    assert "duplicate key" in caught.value.description


# -- signatures --------------------------------------------------------------------------------------------------

KEYS = {alg: (SigningKey.ec(algorithm=alg) if alg.startswith("ES") else SigningKey.rsa(algorithm=alg))
        for alg in ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512")}


def _outcome(check, *args):
    try:
        return bool(check(*args))
    except Exception:  # what the verifier does with any exception: not verified
        return False


def _variants(signature: bytes) -> list[bytes]:
    flipped = bytearray(signature)
    flipped[len(flipped) // 3] ^= 0x01
    half = len(signature) // 2
    return [signature, bytes(flipped), signature[:-1], signature + b"\x00", b"\x00" + signature[:-1], b"",
            b"\x00" * len(signature), b"\x00" * half + signature[half:], signature[:half] + b"\x00" * half,
            b"\xff" * len(signature), signature[half:] + signature[:half]]


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_direct_signature_check_agrees_with_python_jose(alg):
    signer = KEYS[alg]
    key = jwk.construct(signer.public_jwk, alg)
    token = signer.sign({"sub": "a"})
    _, _, signing_input, signature = split_token(token)
    assert signature_verifies(key, signing_input, signature) is True
    for variant in _variants(signature):
        for data in (signing_input, signing_input + b"x", signing_input[:-1]):
            assert _outcome(signature_verifies, key, data, variant) == key.verify(data, variant), (alg, variant.hex())
    other = jwk.construct((SigningKey.ec(algorithm=alg) if alg.startswith("ES") else SigningKey.rsa(algorithm=alg))
                          .public_jwk, alg)
    assert _outcome(signature_verifies, other, signing_input, signature) is False


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_ecdsa_signature_must_be_exactly_r_and_s_at_full_length(alg):
    """R || S with S's leading zero byte left out still holds the right numbers: refused, as python-jose does."""
    signer = KEYS[alg]
    key = jwk.construct(signer.public_jwk, alg)
    size = len(split_token(signer.sign({"n": 0})).signature) // 2
    for attempt in range(1, 5000):  # ECDSA signatures are randomised: about 1 in 256 has S < 2^(8 * (size - 1))
        _, _, signing_input, signature = split_token(signer.sign({"n": attempt}))
        if signature[size] == 0:
            break
    else:
        pytest.fail("no signature with a short S")
    short = signature[:size] + signature[size + 1:]
    assert signature_verifies(key, signing_input, signature) is True
    assert key.verify(signing_input, short) is False
    assert _outcome(signature_verifies, key, signing_input, short) is False


@SETTINGS
@given(st.sampled_from(sorted(KEYS)), st.binary(max_size=600))
def test_random_signatures_never_verify(alg, signature):
    key = jwk.construct(KEYS[alg].public_jwk, alg)
    assert _outcome(signature_verifies, key, b"header.payload", signature) is False


def test_a_key_of_another_kind_goes_through_python_jose():
    class Stub:
        def verify(self, data, signature):
            return data == b"d" and signature == b"s"

    assert signature_verifies(Stub(), b"d", b"s") is True
    assert signature_verifies(Stub(), b"d", b"x") is False


# -- X-Auth-Scopes -----------------------------------------------------------------------------------------------

def _reference_granted_scopes(claims):
    granted = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            granted.update(part for part in value.split(" ") if part)
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str) and item and not item.isspace())
    return frozenset(granted)


def _reference_scopes_header(scopes):
    if any(any(ord(c) < 0x20 or ord(c) == 0x7F for c in s) or " " in s for s in scopes):
        return "refused"
    return " ".join(sorted(scopes))


def _header(scopes):
    try:
        return _scopes_header(scopes)
    except errors.Rejection as rejection:
        assert rejection.status == 401 and rejection.code == "invalid_claims"
        return "refused"


SCOPE = st.text(alphabet="ab: \t\x00\x1f\x7f\u00a0", min_size=1, max_size=5)


@SETTINGS
@given(st.one_of(SCOPE, st.lists(SCOPE, max_size=4)), st.one_of(st.none(), st.lists(SCOPE, max_size=3)))
@example("a", ["b c"])
@example(["a b", "c"], None)
@example("a\x1fb c", None)
@example("a", ["\x7f"])
def test_scopes_header_decides_as_the_reference(scope, scp):
    claims = {"scope": scope} if scp is None else {"scope": scope, "scp": scp}
    scopes = granted_scopes(claims, (("scope",), ("scp",)))
    assert scopes == _reference_granted_scopes(claims)
    assert _header(scopes) == _reference_scopes_header(scopes)
    assert _header(scopes) == _reference_scopes_header(scopes)  # the second time from the cache of valid sets


@SETTINGS
@given(st.one_of(SCOPE, st.lists(SCOPE, max_size=4), st.none(), st.integers()))
@example("  a  b ")
@example("")
@example(" ")
def test_scopes_of_one_scope_claim_are_the_references(scope):
    """A provider with one scope claim (the default): its scope strings are remembered, and decide the same."""
    claims = {"scope": scope, "scp": ["not-read"]}
    expected = _reference_granted_scopes({"scope": scope})
    first = granted_scopes(claims, (("scope",),))
    assert first == expected
    assert granted_scopes(claims, (("scope",),)) is first  # the second time from the remembered set
    assert _header(first) == _reference_scopes_header(first)


# -- the verified-header cache -------------------------------------------------------------------------------------

async def _verifier(rsa: SigningKey, ec_key: SigningKey):
    """Two providers over static keys: `a` takes RS256 (kid rsa-1), `b` takes ES256 only and typ at+jwt."""
    def provider(name, issuer, key, algorithms, extra=""):
        return provider_yaml(None, name, issuer, algorithms=algorithms,
                             extra=f"jwks: {json.dumps({'keys': [key.public_jwk]})}\n{extra}")

    config = typed_config(config_text("http://127.0.0.1:1", [
        provider("a", "https://a.test/", rsa, "[RS256]"),
        provider("b", "https://b.test/", ec_key, "[ES256]", "typ: at+jwt"),
    ], "  - {path: /, access: authenticated}\n"))
    caches = {p.name: JwksCache(p, None) for p in config.providers}
    for cache in caches.values():
        await cache.start()
    return Verifier(caches)


async def _verify(verifier, token):
    try:
        return await verifier.verify_bearer(token, None)
    except errors.Rejection as rejection:
        return rejection.code


async def test_verified_header_cache_holds_only_verified_headers_and_skips_no_check(monkeypatch):
    monkeypatch.setattr(module, "_VERIFIED_HEADERS", {})
    rsa, ec_key = SigningKey.rsa("rsa-1"), SigningKey.ec("ec-1")
    verifier = await _verifier(rsa, ec_key)
    good = rsa.sign(claims(issuer="https://a.test/"))
    forged = SigningKey.rsa("rsa-1").sign(claims(issuer="https://a.test/"), headers={"typ": "forged"})
    assert await _verify(verifier, forged) == "invalid_signature"
    assert module._VERIFIED_HEADERS == {}  # a forged token's header is never kept
    assert (await _verify(verifier, good)).provider == "a"
    encoded = good.split(".")[0].encode()
    assert module._VERIFIED_HEADERS == {encoded: json.loads(base64url_decode(encoded))}
    # the same header bytes on a token for provider b: alg, kid and typ are still checked against b's rules
    payload = b64url(json.dumps(claims(issuer="https://b.test/")).encode())
    signing_input = f"{good.split('.')[0]}.{payload}"
    for_b = signing_input + "." + good.split(".")[2]
    assert await _verify(verifier, for_b) == "invalid_header"
    assert module._VERIFIED_HEADERS[encoded] == json.loads(base64url_decode(encoded))  # unchanged by its readers
    # and the cached header's token still needs its own valid signature
    assert await _verify(verifier, good.rsplit(".", 1)[0] + "." + forged.split(".")[2]) == "invalid_signature"


async def test_verified_header_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(module, "_VERIFIED_HEADERS", {})
    monkeypatch.setattr(module, "_VERIFIED_HEADERS_MAX", 3)
    rsa, ec_key = SigningKey.rsa("rsa-1"), SigningKey.ec("ec-1")
    verifier = await _verifier(rsa, ec_key)
    for i in range(6):
        token = rsa.sign(claims(issuer="https://a.test/"), headers={"x-n": i})
        assert (await _verify(verifier, token)).provider == "a"
    assert len(module._VERIFIED_HEADERS) == 3


@pytest.mark.parametrize("cnf, binding, jkt", [
    ("absent", (), None),
    (None, (), None),  # a null cnf binds to nothing, as an absent one
    ({"jkt": "A" * 43}, (("X-Auth-Binding", "dpop"),), "A" * 43),
    ({"x5t#S256": "B" * 43}, (("X-Auth-Binding", "mtls"),), None),
])
async def test_the_binding_headers_and_jkt_follow_cnf(cnf, binding, jkt):
    rsa, ec_key = SigningKey.rsa("rsa-1"), SigningKey.ec("ec-1")
    verifier = await _verifier(rsa, ec_key)
    body = claims(issuer="https://a.test/")
    if cnf != "absent":
        body["cnf"] = cnf
    identity = await _verify(verifier, rsa.sign(body))
    assert identity.upstream_headers[4:] == binding and identity.jkt == jkt
