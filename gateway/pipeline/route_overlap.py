"""Which earlier routes answer requests a later route was written for ("first match wins" traps).

One analysis for the loader (a route that can never match is refused), lint
(one shadowed for some methods is a warning) and `check` (its NOTES column),
so the three can never disagree about what shadows what.  Patterns are
compared in canonical spelling, as routes match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from gateway.auth.requirements import TokenNeed
from gateway.pipeline.canonical_path import canonical_segment
from gateway.pipeline.route_table import Route

STAR, DSTAR = object(), object()


def segments(pattern: str) -> tuple:
    parts = pattern[1:].split("/")
    return tuple(STAR if p == "*" else DSTAR if p == "**" else canonical_segment(p) for p in parts)


def covers(broad: tuple, narrow: tuple) -> bool:
    """Does every path the `narrow` pattern matches also match `broad`?  Never a false yes."""
    if not broad:
        return not narrow
    head = broad[0]
    if head is DSTAR:
        return True
    if not narrow or narrow[0] is DSTAR:
        return False
    other = narrow[0]
    if head is STAR:
        if other == "":  # a trailing slash is an empty segment, and '*' needs at least one character
            return False
    elif other is STAR or other != head:
        return False
    return covers(broad[1:], narrow[1:])


def taken_methods(earlier: Route, later: Route) -> frozenset[str] | None:
    """The methods of `later` that `earlier` answers first (None: all of them), given patterns that cover."""
    if earlier.methods is None:
        return None
    if later.methods is None:
        return earlier.methods
    overlap = earlier.methods & later.methods
    return None if overlap == later.methods else overlap


@dataclass(frozen=True)
class Overlap:
    """`earlier` answers `taken` (None: every) request that `route`, further down, was written for."""

    route: Route
    earlier: Route
    taken: frozenset[str] | None

    @property
    def opened(self) -> str | None:
        """'public' or 'optional-token' when the earlier route lets through without a token what this one protects."""
        if self.route.access.token is not TokenNeed.REQUIRED:
            return None
        return {TokenNeed.NONE: "public", TokenNeed.OPTIONAL: "optional-token"}.get(self.earlier.access.token)

    def describe(self) -> str:
        earlier, opened = self.earlier, self.opened
        kind = "earlier" if earlier.pattern == self.route.pattern else "broader"
        where = f"the {kind} {opened + ' ' if opened else ''}route {earlier.pattern!r} at line {earlier.line}"
        pattern = self.route.pattern
        if self.taken is None and opened:
            return (f"protected route {pattern!r} is shadowed by {where}: every request it should protect is "
                    "answered without a token; move it above, or narrow the broader route")
        if self.taken is None:
            return f"route {pattern!r} can never match: {where} takes every request it would get; move it above, " \
                   "or remove it"
        consequence = "without a token" if opened else "under that route's rule"
        return f"{','.join(sorted(self.taken))} requests to {pattern!r} are answered by {where} {consequence}, " \
               "not by this route"


def overlaps(routes: tuple[Route, ...] | list[Route]) -> Iterator[Overlap]:
    """Every (later, earlier) pair where the earlier route takes some of the later one's requests, in file order;
    after the first earlier route that takes all of them, nothing more is said about that route."""
    for index, route in enumerate(routes):
        narrow = segments(route.pattern)
        for earlier in routes[:index]:
            if not covers(segments(earlier.pattern), narrow):
                continue
            taken = taken_methods(earlier, route)
            if taken is not None and not taken:
                continue
            yield Overlap(route, earlier, taken)
            if taken is None:
                break
