"""YAML and JSON files that may be hostile (a run folder from elsewhere, a config file), read in bounded time
and memory, as one mapping, or refused in one line that names the file.

- YAML: a few hundred bytes of nested aliases (``&a [*a, *a, ...]``) stand for billions of nodes. PyYAML
  shares what an alias points to, so loading is quick, but everything that walks the result afterwards (the
  config's parser, compare's option differences) expands it. The composed node graph is measured as it
  would expand, and refused past :data:`MAX_NODES`, before anything is built from it. Aliases themselves are
  fine: YAML's dumpers write them for repeated objects.
- JSON is read as JSON (pure-Python YAML took 92 s for a 50 MB file), depth bounded by Python's recursion
  limit (caught).
- Either file larger than :data:`MAX_BYTES` is refused unread: a run's config.yaml or fit_budget.json is a
  few kilobytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from cifarbench.errors import CifarbenchError

MAX_BYTES = 16 << 20
MAX_NODES = 100_000


def read_yaml_mapping(path: str | os.PathLike[str], what: str = "a mapping") -> dict[str, Any]:
    """The YAML (or JSON) mapping in ``path``; CifarbenchError naming the file for anything else."""
    text = _read_text(path)
    loader = yaml.SafeLoader(text)  # the pure-Python composer: deep nesting is a RecursionError, not a crash
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_size(node, path)
            loaded = loader.construct_document(node)
        else:
            loaded = None
    except yaml.YAMLError as error:
        raise CifarbenchError(f"{path}: not valid YAML ({_yaml_reason(error)})") from None
    except RecursionError:
        raise CifarbenchError(f"{path}: nested too deep to be {what}") from None
    finally:
        loader.dispose()
    return _mapping(loaded, path, what)


def read_json_mapping(path: str | os.PathLike[str], what: str = "a mapping") -> dict[str, Any]:
    """The JSON object in ``path``; CifarbenchError naming the file for anything else."""
    text = _read_text(path)
    try:
        loaded = json.loads(text)
    except ValueError as error:
        raise CifarbenchError(f"{path}: not valid JSON ({_one_line(error)})") from None
    except RecursionError:
        raise CifarbenchError(f"{path}: nested too deep to be {what}") from None
    return _mapping(loaded, path, what)


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        size = os.stat(path).st_size
        if size > MAX_BYTES:
            raise CifarbenchError(
                f"{path}: {size / 2**20:,.1f} MiB is too large to read (more than {MAX_BYTES >> 20} MiB; the "
                f"file cifarbench writes is a few kilobytes)"
            )
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = f"{type(error).__name__}: {_one_line(error)}"
        raise CifarbenchError(f"{path}: cannot be read ({reason})") from None


def _mapping(loaded: Any, path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    if not isinstance(loaded, dict):
        raise CifarbenchError(f"{path}: must be {what}, not {_kind(loaded)}")
    return loaded


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return {str: "a string", list: "a list", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _check_size(root: yaml.Node, path: str | os.PathLike[str]) -> None:
    """Refuse a node graph that expands (aliases followed) past MAX_NODES, or that contains itself."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: nesting depth costs no recursion here
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_NODES:
                raise CifarbenchError(
                    f"{path}: its aliases expand to more than {MAX_NODES:,} values (a YAML bomb?); write the "
                    f"values out instead"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise CifarbenchError(f"{path}: an alias refers to a value that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _yaml_reason(error: yaml.YAMLError) -> str:
    """Where and what, without PyYAML's multi-line excerpt of the text."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is None or problem is None:
        return _one_line(error)
    return f"line {mark.line + 1}, column {mark.column + 1}: {_one_line(problem)}"


def _one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split())
