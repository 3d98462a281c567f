import pytest

from gateway.auth import requirements
from gateway.pipeline.route_table import MethodNotAllowed, NoRoute, PatternError, Route, RouteTable, compile_pattern


def table(*specs):
    return RouteTable(tuple(Route(p, compile_pattern(p), frozenset(m) if m else None, requirements.PUBLIC, None, i)
                            for i, (p, m) in enumerate(specs)))


@pytest.mark.parametrize("pattern, path, matches", [
    ("/admin", "/admin", True),
    ("/admin", "/administrator", False),
    ("/admin", "/Admin", False),
    ("/admin", "/admin/", False),
    ("/admin/**", "/admin", True),
    ("/admin/**", "/admin/x/y", True),
    ("/admin/**", "/admin-old", False),
    ("/a/*/c", "/a/b/c", True),
    ("/a/*/c", "/a/b/x/c", False),
    ("/a/*", "/a/", False),
    ("/**", "/anything/at/all", True),
    ("/", "/", True),
    ("/", "/x", False),
])
def test_patterns_match_whole_segments(pattern, path, matches):
    assert (compile_pattern(pattern).match(path) is not None) == matches


@pytest.mark.parametrize("pattern", ["admin", "/a/**/b", "/a*", "/a//b", "/a/../b"])
def test_bad_patterns(pattern):
    with pytest.raises(PatternError):
        compile_pattern(pattern)


def test_first_match_wins_and_405_lists_reachable_methods():
    routes = table(("/x", {"GET", "HEAD"}), ("/x", {"DELETE"}), ("/**", None))
    assert routes.match("GET", "/x").line == 0
    assert routes.match("DELETE", "/x").line == 1
    assert routes.match("POST", "/x").line == 2
    only = table(("/x", {"GET"}), ("/x", {"DELETE"}))
    assert only.match("PUT", "/x") == MethodNotAllowed(("DELETE", "GET"))
    assert isinstance(only.match("GET", "/y"), NoRoute)
