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


# PyYAML's common complaints, each as what usually causes it and the fix: (context, problem start) -> sentence;
# "opened" ones are reported at the line where the unclosed thing starts.
_YAML_ERRORS = (
    (None, "mapping values are not allowed here", False,
     "a 'key:' where none can be: this line is indented deeper than the key above it (line them up), or the "
     "line above lacks its ':', or a value contains ': ' (put that value in quotes)"),
    ("while parsing a block mapping", "expected <block end>, but found '<block mapping start>'", False,
     "this line is indented deeper than the keys above it: line it up with them (only a key with no value "
     "on its own line can have keys indented under it)"),
    ("while parsing a block mapping", "expected <block end>, but found '<block sequence start>'", False,
     "this list item ('- ') is not lined up with the items above it: indent every '- ' of one list the same"),
    ("while parsing a block mapping", "expected <block end>, but found '-'", False,
     "this '-' does not start a list item where one can be: write '- ' (dash, space) lined up with the other items"),
    (None, "expected <block end>, but found '?'", False,
     "this key is indented less than the keys of the item above it: line it up with them (or, if it is a "
     "new item, start it with '- ')"),
    (None, "found character '\\t' that cannot start any token", False,
     "a tab indents this line, and YAML indents with spaces only: replace the tab with spaces"),
    (None, "found character '@' that cannot start any token", False,
     "a value cannot start with '@' unquoted: put it in quotes"),
    (None, "found character '`' that cannot start any token", False,
     "a value cannot start with '`' unquoted: put it in quotes"),
    ("while scanning a quoted scalar", "", True,
     "a quote opened on this line is never closed: add the closing quote"),
    ("while parsing a flow sequence", "", True,
     "a '[' opened on this line is not closed, or its items are not separated by ',': close it with ']'"),
    ("while parsing a flow mapping", "", True,
     "a '{' opened on this line is not closed, or its items are not separated by ',': close it with '}'"),
    ("while scanning an alias", "", False,
     "'*' starts a YAML alias: write the value in quotes ('*'), or leave the key out"),
)


def _explained(exc: yaml.MarkedYAMLError) -> tuple[int, str]:
    """(line, one sentence with the likely fix) for PyYAML's error; its own words follow in parentheses."""
    raw = exc.problem or str(exc)
    for context, problem, opened, sentence in _YAML_ERRORS:
        if (context is None or exc.context == context) and raw.startswith(problem):
            mark = (exc.context_mark if opened else exc.problem_mark) or exc.problem_mark or exc.context_mark
            return (mark.line + 1 if mark else 1), f"{sentence} (YAML: {raw})"
    mark = exc.problem_mark or exc.context_mark
    return (mark.line + 1 if mark else 1), raw


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
        line, message = _explained(exc)
        raise YamlProblem(line, f"not valid YAML: {message}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"not valid YAML: {exc}") from None
    if node is None:
        raise YamlProblem(1, "the file is empty")
    try:
        return _Reader(env).convert(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise YamlProblem(mark.line + 1 if mark else 1, f"bad value: {exc.problem}") from None
