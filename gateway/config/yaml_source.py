"""Reads YAML into plain values that remember their line numbers.

PyYAML silently keeps the last of two equal keys and forgets where values
came from; an auth config needs both fixed: a duplicated `access:` must be an
error, and every problem must point at file:line.  `${NAME}` and
`${NAME:-default}` in unquoted or quoted scalars are expanded from the
environment (and a `.env` file) here, once, before any value is typed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml


class YamlProblem(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


class LocatedMap(dict):
    """A mapping that knows its own line and the line of each key."""

    line: int
    key_lines: dict


class LocatedList(list):
    """A sequence that knows its own line and the line of each item."""

    line: int
    item_lines: list


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments, blanks and `export ` are allowed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def environment(dotenv: Path | None) -> dict[str, str]:
    """The variables `${...}` sees: the process environment wins over `.env`."""
    env = read_dotenv(dotenv) if dotenv else {}
    env.update(os.environ)
    return env


def _expand(text: str, env: dict[str, str], line: int) -> str:
    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise YamlProblem(
                    line,
                    f"environment variable {name} is not set; "
                    f"export it, put it in .env, or write ${{{name}:-default}}",
                )
            return default
        return value

    return _VAR.sub(substitute, text)


class _Reader:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.constructor = yaml.SafeLoader("")
        self.resolver = yaml.resolver.Resolver()

    def convert(self, node: yaml.Node):
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result = LocatedMap()
            result.line = line
            result.key_lines = {}
            self.constructor.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = self.convert(key_node)
                key_line = key_node.start_mark.line + 1
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    raise YamlProblem(key_line, "mapping keys must be plain scalars")
                if key in result:
                    raise YamlProblem(
                        key_line,
                        f"duplicate key {key!r} (first at line {result.key_lines[key]}); "
                        "YAML would silently keep only the last one",
                    )
                result[key] = self.convert(value_node)
                result.key_lines[key] = key_line
            return result
        if isinstance(node, yaml.SequenceNode):
            items = LocatedList(self.convert(item) for item in node.value)
            items.line = line
            items.item_lines = [item.start_mark.line + 1 for item in node.value]
            return items
        if node.tag == "tag:yaml.org,2002:str" and "${" in node.value:
            expanded = _expand(node.value, self.env, line)
            if node.style in ("'", '"'):
                return expanded
            node = yaml.ScalarNode(
                self.resolver.resolve(yaml.ScalarNode, expanded, (True, False)),
                expanded,
                node.start_mark,
                node.end_mark,
            )
        return self.constructor.construct_object(node, deep=True)


def load_located(text: str, env: dict[str, str]):
    """Parse one YAML document into LocatedMap/LocatedList/scalars."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlProblem(line, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"not valid YAML: {exc}") from None
    if node is None:
        raise YamlProblem(1, "the file is empty")
    try:
        return _Reader(env).convert(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise YamlProblem(mark.line + 1 if mark else 1, f"bad value: {exc.problem}") from None
