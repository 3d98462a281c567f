"""Property-based tests (hypothesis) for the pieces every request goes through before any network I/O.

* canonicalize: never raises anything but PathRejected; idempotent; its
  output means to Werkzeug (decode once, merge `//`) exactly what the
  client's spelling meant, and every spelling of one path gets one output;
* the forwarded URL (yarl, encoded=True) carries the canonical path byte for
  byte, and that path re-matches the same route;
* route patterns: `*` is one segment, `**` whole trailing segments only;
* extract_authorization, split_token and check_claims: any input is a token, None,
  or a 401 Rejection, never another exception.
"""
import os
import string
import time
from urllib.parse import unquote

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import errors
from gateway.pipeline.canonical_path import PathRejected, canonicalize, split_target
from gateway.auth.extractor import extract_authorization
from gateway.pipeline.route_table import Route, compile_pattern
from gateway.auth.verifier import Verifier, split_token
from tests.support.config import config_text, provider_yaml, typed_config
from tests.support.keys import AUDIENCE, ISSUER

# Fresh examples on a developer's machine; a fixed sequence in CI (CI=true), so a red build replays.
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=bool(os.environ.get("CI")))
PATH_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%/?#\\ \"<>[]{}|^`" + "é☃\x00\x1f\x7f"
WERKZEUG_SAFE = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/;?#%\\")


def werkzeug_view(path: str) -> str:
    """What Werkzeug routes on: escapes decoded once, empty segments merged."""
    decoded = unquote(path, errors="strict")
    while "//" in decoded:
        decoded = decoded.replace("//", "/")
    return decoded


def canonical_or_none(raw: str):
    try:
        return canonicalize(raw)
    except PathRejected:
        return None


@SETTINGS
@given(st.one_of(st.text(), st.text(alphabet=PATH_CHARS).map(lambda s: "/" + s)))
def test_canonicalize_raises_only_path_rejected_and_is_idempotent(raw):
    canonical = canonical_or_none(raw)
    if canonical is None:
        return
    assert canonicalize(canonical) == canonical
    assert canonical.startswith("/") and "//" not in canonical
    segments = canonical.split("/")[1:]
    assert not any(s in (".", "..") for s in segments)
    assert all(c in string.ascii_letters + string.digits + "-._~!$&'()*+,=:@%/" for c in canonical)
    view = werkzeug_view(canonical)
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in view)
    assert view.split("/")[1:] == [unquote(s) for s in segments]


@st.composite
def spellings(draw):
    """A decoded path and two independent percent-encodings of it, in random hex case."""
    segments = draw(st.lists(st.text(WERKZEUG_SAFE, min_size=1, max_size=6), min_size=1, max_size=4))
    trailing = draw(st.booleans())
    decoded = "/" + "/".join(segments) + ("/" if trailing else "")

    def spell():
        out = []
        for char in decoded:
            if char != "/" and draw(st.booleans()):
                out.extend("%" + (f"{b:02X}" if draw(st.booleans()) else f"{b:02x}") for b in char.encode())
            elif ord(char) > 0x7F or char in ' "<>[]{}|^`':
                out.extend(f"%{b:02X}" for b in char.encode())  # what a client must escape anyway
            else:
                out.append(char)
        extra_slashes = "/" * draw(st.integers(0, 2))
        return extra_slashes + "".join(out)

    return decoded, spell(), spell()


@SETTINGS
@given(spellings())
def test_one_path_one_spelling_and_it_means_what_the_client_meant(case):
    decoded, first, second = case
    one, other = canonical_or_none(first), canonical_or_none(second)
    assert (one is None) == (other is None), (first, second)
    if one is None:
        assert any(s in (".", "..") for s in decoded.split("/"))  # the only refusals for these alphabets
        return
    assert one == other
    assert werkzeug_view(one) == werkzeug_view(decoded)


PROVIDER_YAML = provider_yaml("http://127.0.0.1:1/jwks.json", "p", algorithms="[RS256]")


def _table():
    routes = (
        "  - {path: /, methods: [GET], access: public}\n"
        "  - {path: /admin/**, access: {scopes: [read:admin]}}\n"
        "  - {path: /a/*/c, access: authenticated}\n"
        "  - {path: '/files/report:2024', access: {scopes: [read:admin]}}\n"
        "  - {path: /café/*, access: {scopes: [read:admin]}}\n"
        "  - {path: /user, access: authenticated}\n"
        "  - {path: /public/**, access: public}\n"
    )
    return typed_config(config_text("http://127.0.0.1:1", PROVIDER_YAML, routes)).routes


TABLE = _table()
TARGET_CHARS = string.ascii_letters[:6] + "ACDEFacdef0123456789-._~!$&'()*+,;=:@%/?#" + "%2F%2E%3A%25%C3%A9"


@SETTINGS
@given(st.text(alphabet=TARGET_CHARS).map(lambda s: "/" + s),
       st.sampled_from(["GET", "POST", "DELETE"]))
def test_forwarded_path_is_the_judged_path_and_rematches_the_same_route(target, method):
    try:
        path, query = split_target(target)
    except PathRejected:
        return
    route = TABLE.match(method, path)
    url = URL("http://127.0.0.1:5000" + path + ("?" + query if query else ""), encoded=True)
    assert url.raw_path == path  # the upstream receives exactly the judged bytes
    assert url.raw_query_string == query
    assert TABLE.match(method, url.raw_path) == route
    assert TABLE.match(method, canonicalize(url.raw_path)) == route
    if isinstance(route, Route):
        segments = path.split("/")[1:]
        if route.pattern == "/a/*/c":
            assert len(segments) == 3 and segments[1]  # '*' is exactly one non-empty segment
        if route.pattern == "/admin/**":
            assert path == "/admin" or path.startswith("/admin/")


@SETTINGS
@given(spellings())
def test_a_pattern_written_as_text_matches_every_spelling_of_it(case):
    """Route patterns are spelt canonically, so `/files/report:2024` or `/café` cannot be dodged by escaping."""
    decoded, first, second = case
    assume("*" not in decoded and not any(s in (".", "..") for s in decoded.split("/")))
    regex = compile_pattern(decoded)
    for spelling in (first, second):
        assert regex.match(canonicalize(spelling)), (decoded, spelling)


HEADER_VALUES = st.one_of(
    st.text(max_size=200),
    st.builds(lambda s, t: f"{s} {t}",
              st.sampled_from(["Bearer", "bearer", "BEARER", "DPoP", "dpop", "Basic", "", "Bearer "]),
              st.text(alphabet=string.ascii_letters + string.digits + "-_.= \t", max_size=300)),
)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["Authorization", "authorization", "X-Other"]), HEADER_VALUES),
                max_size=3),
       st.integers(16, 8192))
def test_extract_authorization_returns_a_bounded_jws_or_none_or_401(headers, limit):
    proxy = CIMultiDictProxy(CIMultiDict(headers))
    try:
        found = extract_authorization(proxy, limit)
    except errors.Rejection as rejection:
        assert rejection.status == 401
        return
    if found is None:
        assert "Authorization" not in proxy
    else:
        scheme, token = found
        assert scheme in ("Bearer", "DPoP") and len(token) <= limit and token.count(".") == 2 and " " not in token


@SETTINGS
@given(st.one_of(st.text(max_size=300),
                 st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=80),
                          min_size=3, max_size=3).map(".".join)))
def test_split_token_only_ever_refuses_with_401(token):
    try:
        header, payload, signing_input, signature = split_token(token)
    except errors.Rejection as rejection:
        assert rejection.status == 401
        return
    assert isinstance(header, dict) and isinstance(payload, bytes)
    assert signing_input == token.rsplit(".", 1)[0].encode() and isinstance(signature, bytes)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)
CLAIM = st.one_of(JSON, st.just(ISSUER), st.just(AUDIENCE), st.integers(-10 ** 30, 10 ** 30))


PROVIDER = typed_config(config_text(
    "http://127.0.0.1:1", PROVIDER_YAML + "\n    forward_claims: {X-User-Email: email}",
    "  - {path: /, access: authenticated}\n")).providers[0]


@SETTINGS
@given(st.fixed_dictionaries({}, optional={name: CLAIM for name in
                                           ("iss", "aud", "exp", "nbf", "iat", "sub", "scope", "scp", "email")}))
def test_check_claims_is_an_identity_or_a_401(payload):
    try:
        identity = Verifier({}).check_claims(payload, PROVIDER, ("k", "RS256", None), b"{}")
    except errors.Rejection as rejection:
        assert rejection.status == 401
        return
    assert identity.expires_at > time.time() - PROVIDER.leeway
    assert all("\r" not in v and "\n" not in v for _, v in identity.upstream_headers)
