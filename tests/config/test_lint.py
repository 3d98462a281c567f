"""Route lints (gateway/config/lint.py) and the overlap analysis they share with the loader
(gateway/pipeline/route_overlap.py): which pattern covers which, routes shadowed for some methods, scopes no
provider declares.  A route that can never match is the loader's to refuse (tests/config/test_route_overlap.py)."""
import pytest

from gateway.config.lint import lint
from gateway.config.loader import ConfigError
from gateway.pipeline.route_overlap import covers, segments
from tests.support.config import config_text, provider_yaml, typed_config


def linted(routes: str, provider_extra: str = ""):
    """The lint findings for these routes (one provider, keys over https: no plain-http lint), and line_of(path)."""
    provider = provider_yaml("https://127.0.0.1:1/jwks.json", "main", algorithms="[RS256]", extra=provider_extra)
    text = config_text("http://127.0.0.1:5000", provider, routes)
    lines = text.splitlines()
    return lint(typed_config(text)), lambda path: lines.index(f"  - path: {path}") + 1


@pytest.mark.parametrize("broad, narrow, expected", [
    ("/**", "/anything/at/all", True),
    ("/admin/**", "/admin", True),
    ("/admin/**", "/admin/users/*", True),
    ("/admin/*", "/admin/users", True),
    ("/admin/*", "/admin/", False),  # '*' needs a non-empty segment
    ("/admin/*", "/admin/**", False),
    ("/admin/users", "/admin/*", False),
    ("/admin/**", "/administrator", False),
    ("/*/b", "/a/*", False),
    ("/caf%C3%A9", "/café", True),  # compared in canonical spelling, as routes match
])
def test_pattern_cover(broad, narrow, expected):
    assert covers(segments(broad), segments(narrow)) is expected


def test_lints_find_shadowing_and_unreachable_scopes():
    findings, line_of = linted("""\
  - path: /api/**
    methods: [GET]
    access: public
  - path: /api/reports
    access:
      scopes: [read:reports]
  - path: /billing
    access:
      scopes: [read:billing]
""")
    by_line = {f.line: f.message for f in findings}
    assert f"GET,HEAD requests to '/api/reports' are answered by the broader public route '/api/**' at line " \
           f"{line_of('/api/**')} without a token" in by_line[line_of("/api/reports")]
    assert line_of("/billing") not in by_line  # no provider declares scopes: nothing to say
    with pytest.raises(ConfigError) as refused:  # swallowed whole: the loader refuses it
        linted("  - path: /admin/*\n    access: authenticated\n  - path: /admin/users\n    access: authenticated\n")
    assert "route '/admin/users' can never match: the broader route '/admin/*' at line" in refused.value.problems[0]

    findings, _ = linted("  - path: /billing\n    access:\n      scopes: [read:billing]\n",
                         provider_extra="scopes: [read:reports]")
    (finding,) = findings
    assert finding.message == "route '/billing' requires scope 'read:billing', which none of the providers main " \
                              "declares under 'scopes:'"
