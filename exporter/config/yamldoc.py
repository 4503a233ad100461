"""YAML files checked with every problem at once: `file:LINE: key.path: what is wrong`.

The main config and the web config are both read with `YamlDocument`. Only the
standard library and PyYAML: the health check reads the web config with it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """The config is unusable; `problems` holds one message per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def read_text(path: Path, what: str) -> str:
    """The file's text, or a ConfigError naming `what` (config file, web config) and why not."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what}: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read {what}: not UTF-8 text"]) from None


class YamlDocument:
    """A YAML file's data, and problems that say where: `file:LINE: key.path: what is wrong`.

    Invalid YAML raises ConfigError at once; duplicate keys (legal YAML that silently
    drops a value) are problems from the start. The main config and the web config
    are both checked with it.
    """

    def __init__(self, text: str, source: str):
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
        except RecursionError:  # legal YAML nested past the parser's stack
            raise ConfigError([f"{source}: invalid YAML: nested too deeply"]) from None
        self.source = source
        self.lines = _line_index(node)
        self.problems = [f"{source}:{line}: {key}: duplicate key" for line, key in _duplicate_keys(node)]

    def problem(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        if line is None:  # a missing key: point at its parent
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            line = self.lines.get(parent)
        where = f"{self.source}:{line}" if line else self.source
        self.problems.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")

    def raise_problems(self) -> None:
        """Raise ConfigError with every problem, in line order, if there is any."""
        if self.problems:
            raise ConfigError(sorted(self.problems, key=_line_of))


def _line_of(problem: str) -> int:
    """A problem's line number (`file:LINE: ...`), for reporting them in file order; 0 if none."""
    parts = problem.split(":", 2)
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


def _line_index(node: yaml.Node | None) -> dict[str, int]:
    """Map each key path ("environments[0].id") to its 1-based line in the file."""
    lines: dict[str, int] = {}

    def walk(n: yaml.Node, path: str) -> None:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                child = f"{path}.{key.value}" if path else str(key.value)
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, f"{path}[{i}]")

    if node is not None:
        walk(node, "")
    return lines


def _duplicate_keys(node: yaml.Node | None) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []

    def walk(n: yaml.Node) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in n.value:
                if key.value in seen:
                    found.append((key.start_mark.line + 1, str(key.value)))
                seen.add(key.value)
                walk(value)
        elif isinstance(n, yaml.SequenceNode):
            for item in n.value:
                walk(item)

    if node is not None:
        walk(node)
    return found
