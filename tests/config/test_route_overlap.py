"""Issue 12 item 7: route shadowing has one implementation; the loader, lint and `check` agree on every pair.

Before, the loader refused only a repeated pattern or an earlier `/**`, lint compared patterns segment by
segment, and `check` had its own loop: `/admin/*` above `/admin/users` loaded (only lint refused it).
"""
import pytest

from gateway.config.lint import lint
from gateway.config.loader import ConfigError, build_config
from gateway.config.yaml_source import load_located
from gateway.tools.check import rules_table
from tests.support.config import REPO, config_text, provider_yaml

EARLIER_LINE, LATER_LINE = 11, 14


def routes(earlier: str, earlier_methods: str, later: str, later_methods: str, earlier_access="authenticated"):
    def route(path, methods, access):
        return f"  - path: {path}\n    methods: {methods}\n    access: {access}\n"
    return route(earlier, earlier_methods, earlier_access) + route(later, later_methods, "authenticated")


CASES = [  # (routes, what every tool must say)
    (routes("/admin/*", "[GET, POST]", "/admin/users", "[GET]"), "refused"),
    (routes("/**", "[GET, DELETE]", "/x", "[DELETE]"), "refused"),
    (routes("/a", "[GET, POST]", "/a", "[POST]"), "refused"),
    (routes("/admin/**", "[GET, POST]", "/admin/secrets", "[GET]", earlier_access="public"), "refused"),
    (routes("/docs/**", "[GET]", "/docs/drafts", "[GET, PUT]"), "partly"),
    (routes("/a/*", "[GET]", "/a/", "[GET]"), "apart"),
    (routes("/a", "[GET]", "/a", "[POST]"), "apart"),
    (routes("/a/b", "[GET]", "/a/*", "[GET]"), "apart"),
]


def build(text: str):
    return build_config(load_located(config_text("http://127.0.0.1:5000", provider_yaml("https://k.test/j"), text), {}),
                        "<t>", REPO)


@pytest.mark.parametrize("text, verdict", CASES)
def test_loader_lint_and_check_agree_on_every_route_pair(text, verdict):
    if verdict == "refused":
        with pytest.raises(ConfigError) as refused:
            build(text)
        (problem,) = refused.value.problems
        assert problem.startswith(f"<t>:{LATER_LINE}: ")
        assert ("can never match" in problem or "is shadowed by the broader public route" in problem), problem
        assert f"at line {EARLIER_LINE}" in problem
        return
    config = build(text)
    warnings = [f.message for f in lint(config) if f.line == LATER_LINE]
    note = rules_table(config)[2]
    if verdict == "partly":
        assert len(warnings) == 1 and f"answered by the broader route '/docs/**' at line {EARLIER_LINE}" in warnings[0]
        assert f"GET,HEAD taken by line {EARLIER_LINE}" in note
    else:
        assert warnings == [] and "taken by line" not in note
