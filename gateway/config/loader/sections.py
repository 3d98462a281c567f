"""The validation framework every section of routes.yaml is read through: typed getters, `file:line` problems.

A misspelt key must never loosen a rule (`acess:` would otherwise leave a
route with no access rule), so unknown keys, wrong types and impossible
routes are all errors and the gateway refuses to start.
"""
from __future__ import annotations

import difflib
import math
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
            value = float(value)
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
        value = self.get(key, float, default)
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

