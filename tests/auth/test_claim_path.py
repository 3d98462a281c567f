import pytest

from gateway.auth.claim_path import MISSING, ClaimPathError, format_claim_path, lookup, parse_claim_path


@pytest.mark.parametrize("text, path", [
    ("scope", ("scope",)),
    ("realm_access.roles", ("realm_access", "roles")),
    ("resource_access.[my.api].roles", ("resource_access", "my.api", "roles")),
    ("[https://example.com/roles]", ("https://example.com/roles",)),
    ("[a.b].[c]", ("a.b", "c")),
])
def test_parse(text, path):
    assert parse_claim_path(text) == path
    assert parse_claim_path(format_claim_path(path)) == path


@pytest.mark.parametrize("text", ["", ".a", "a.", "a..b", "[a", "a]", "[a]b", "[[a]]", "[]"])
def test_malformed_paths_are_refused(text):
    with pytest.raises(ClaimPathError):
        parse_claim_path(text)


def test_lookup_never_raises_on_odd_shapes():
    payload = {"a": {"b": [1]}, "s": "text", "https://x/roles": ["r"]}
    assert lookup(payload, ("a", "b")) == [1]
    assert lookup(payload, ("a", "b", "c")) is MISSING
    assert lookup(payload, ("s", "x")) is MISSING
    assert lookup(payload, ("https://x/roles",)) == ["r"]
    assert lookup([], ("a",)) is MISSING
