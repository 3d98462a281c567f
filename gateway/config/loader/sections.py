"""The validation framework every section of routes.yaml is read through: typed getters, `file:line` problems.

A misspelt key must never loosen a rule (`acess:` would otherwise leave a
route with no access rule), so unknown keys, wrong types and impossible
routes are all errors and the gateway refuses to start.
"""
from __future__ import annotations

import difflib
import math
import re
from typing import Any
from urllib.parse import urlsplit

from gateway.config.yaml_source import LocatedList, LocatedMap


class ConfigError(Exception):
    """Every problem found, each already formatted as `file:line: message`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Problems:
    """Every problem found in one file, formatted as `file:line: message`."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, line: int, message: str) -> None:
        self.items.append(f"{self.source}:{line}: {message}")


class Section:
    """Typed access to one YAML mapping; unknown keys are reported on `done()`."""

    def __init__(self, data: LocatedMap, where: str, problems: Problems, known: tuple[str, ...],
                 elsewhere: dict[str, str] | None = None):
        """`elsewhere` maps keys of a parent or child section to where they belong (an indentation slip)."""
        self.data = data
        self.where = where
        self.problems = problems
        self.known = known
        self.misplaced = [key for key in data if key not in known and key in (elsewhere or {})]
        for key in data:
            if key in self.misplaced:
                problems.add(data.key_lines[key], f"{key!r} belongs {elsewhere[key]}, not in {where}; "
                                                  "check its indentation")
            elif key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                problems.add(
                    data.key_lines[key],
                    f"unknown key {key!r} in {where}{suggestion} "
                    f"(known keys: {', '.join(known)})",
                )

    def line(self, key: str) -> int:
        return self.data.key_lines.get(key, self.data.line)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type | tuple, default: Any = None, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                self.problems.add(self.data.line, f"{self.where} needs {key!r}")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, float) and not math.isfinite(value):
            self.problems.add(self.line(key), f"{key!r} in {self.where} must be a finite number")
            return default
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:  # a few hundred digits: beyond any float
                self.problems.add(self.line(key), f"{key!r} in {self.where} is far too large a number")
                return default
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join(type_name(k) for k in kinds)
            self.problems.add(
                self.line(key), f"{key!r} in {self.where} must be {names}, not {type_name(type(value))}"
            )
            return default
        return value

    def number(self, key: str, default: float, minimum: float = 0.0, maximum: float = math.inf) -> float:
        if key not in self.data:
            return default
        value = self.get(key, float)
        if value is None:  # the wrong type, already reported
            return default
        return self._within(key, value, default, minimum, maximum)

    def duration(self, key: str, default: float, minimum: float = 0.0, maximum: float = math.inf,
                 positive: bool = False) -> float:
        """Seconds, written as a number (30, 0.5) or with units (30s, 5m, 1h, 1h30m, 250ms).

        `positive`: 0 is refused as well, for settings where it would make every request fail at once.
        """
        if key not in self.data:
            return default
        value = self.data[key]
        seconds = parse_duration(value)
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.add(self.line(key), f"{key!r} in {self.where} must be a finite number")
            return default
        if seconds is None:
            self.problems.add(self.line(key), f"{key!r} in {self.where} must be a duration: seconds (30, 0.5) or "
                                              f"a number with a unit (30s, 5m, 1h), not {describe_value(value)}")
            return default
        if positive and seconds <= 0:
            self.problems.add(self.line(key), f"{key!r} in {self.where} must be more than 0 (a zero or negative "
                                              "time would fail every request at once); leave it out for the "
                                              f"default, {default:g}s")
            return default
        return self._within(key, seconds, default, minimum, maximum)

    def _within(self, key: str, value: float, default: float, minimum: float, maximum: float) -> float:
        if not minimum <= value <= maximum:
            bound = f"between {minimum:g} and {maximum:g}" if maximum < math.inf else f"at least {minimum:g}"
            self.problems.add(self.line(key), f"{key!r} in {self.where} must be {bound}")
            return default
        return value

    def strings(self, key: str, default: tuple = (), allow_single: bool = False) -> tuple[str, ...]:
        """A list of non-empty strings (or one string where `allow_single`); a lone string gets its list spelling."""
        value = self.data.get(key)
        if isinstance(value, str) and not allow_single:
            items = value.replace(",", " ").split() or [value]
            self.problems.add(self.line(key), f"{key!r} in {self.where} must be a list, not a string: "
                                              f"write {key}: [{', '.join(items)}]")
            return default
        value = self.get(key, (list, str) if allow_single else list, None)
        if value is None:
            return default
        items = [value] if isinstance(value, str) else value
        result = []
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item:
                line = value.item_lines[index] if isinstance(value, LocatedList) else self.line(key)
                self.problems.add(line, f"every item of {key!r} in {self.where} must be a non-empty string")
                continue
            result.append(item)
        return tuple(result)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_PLAIN_SECONDS = re.compile(r"-?\d+(?:\.\d+)?")


def parse_duration(value: object) -> float | None:
    """Seconds from a finite number or a text like `30s`, `5m`, `1h30m`; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            return None
        return seconds if math.isfinite(seconds) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _PLAIN_SECONDS.fullmatch(text):
        return float(text)
    if not _DURATION.fullmatch(text):
        return None
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    return seconds if math.isfinite(seconds) else None


def describe_value(value: object) -> str:
    """A value as the user wrote it, shortened: for messages."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return type_name(type(value))


def type_name(kind: type) -> str:
    return {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list",
        LocatedList: "a list",
        dict: "a mapping",
        LocatedMap: "a mapping",
        type(None): "empty",
    }.get(kind, kind.__name__)


def is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)

