"""The YAML configs shipped with cifarbench (package data), usable by name: ``--config fast``.

- ``demo``: the short CPU profiling fit of ``make demo``.
- ``fast``: the fastest correct settings for one CUDA GPU.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cifarbench.errors import ConfigError
from cifarbench.readers import read_yaml_mapping

_CONFIG_OPTIONS = ("--config", "-c")


def names() -> list[str]:
    """The shipped configs, by name (the file name without ``.yaml``)."""
    return sorted(entry.name[: -len(".yaml")] for entry in resources.files(__name__).iterdir()
                  if entry.name.endswith(".yaml"))  # fmt: skip


def path(name: str) -> Path:
    """The file of the shipped config ``name`` (``fast``, ``demo``)."""
    if name not in names():
        raise ConfigError(
            f"{name!r} is not a shipped config: use one of {', '.join(names())}, or a YAML file's path"
        )
    return Path(str(resources.files(__name__) / f"{name}.yaml"))


def expand_names(args: list[str]) -> list[str]:
    """``args`` with ``--config NAME`` of a shipped config replaced by its file (a file of that name wins)."""
    expanded = list(args)
    for index, arg in enumerate(expanded):
        option, equals, inline = arg.partition("=")
        if option not in _CONFIG_OPTIONS:
            continue
        if equals and _is_shipped_name(inline):
            expanded[index] = f"{option}={path(inline)}"
        elif not equals and index + 1 < len(expanded) and _is_shipped_name(expanded[index + 1]):
            expanded[index + 1] = str(path(expanded[index + 1]))
    return expanded


def _is_shipped_name(value: str) -> bool:
    return value in names() and not Path(value).exists()


def check_files(args: list[str]) -> None:
    """Every ``--config FILE`` in ``args`` must hold a mapping of options, read in bounded time and memory.

    Raises CifarbenchError naming the file: broken YAML, a string or a list where the options should be, or
    aliases that expand past bounds (the parser would walk every expanded value).
    """
    for index, arg in enumerate(args):
        option, equals, inline = arg.partition("=")
        if option not in _CONFIG_OPTIONS:
            continue
        value = inline if equals else (args[index + 1] if index + 1 < len(args) else None)
        if value is not None and Path(value).is_file():
            read_yaml_mapping(value, what="a mapping of options (trainer:, model:, data:, ...)")
