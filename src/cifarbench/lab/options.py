"""Types of the lab parts' options that are comma lists on the command line (``--workers 0,4,8``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jsonargparse.typing import register_type

from cifarbench.model import COMPILE_MODES


class CommaList(tuple):
    """An option written ``a,b,c`` on the command line (a YAML list in a config works too).

    Subclasses set ``item`` (turns one text into an item, or raises ValueError) and ``rule`` (what a valid
    value looks like, for the error message).
    """

    item: Callable[[str], Any] = str
    rule = "must be a comma-separated list"

    @classmethod
    def parse(cls, value: Any) -> CommaList:
        texts = (
            value.split(",")
            if isinstance(value, str)
            else value
            if isinstance(value, list | tuple)
            else [value]
        )
        try:
            items = [cls.item(str(text).strip()) for text in texts if str(text).strip()]
        except ValueError:
            items = []
        if not items:
            raise ValueError(cls.rule)
        return cls(items)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _compile_mode(text: str) -> str:
    if text not in COMPILE_MODES:
        raise ValueError(text)
    return text


class WorkerCounts(CommaList):
    """DataLoader worker counts, e.g. ``0,4,8``."""

    item = staticmethod(_count)
    rule = "must be a comma-separated list of counts >= 0, e.g. --workers 0,4,8"


class CompileModes(CommaList):
    """torch.compile modes, e.g. ``default,reduce-overhead``."""

    item = staticmethod(_compile_mode)
    rule = f"must be a comma-separated list of {', '.join(COMPILE_MODES)}"


def register_option_types() -> None:
    """Teach jsonargparse the comma lists (idempotent); call before building a parser that uses them."""
    for option_type in (WorkerCounts, CompileModes):
        register_type(
            option_type, serializer=lambda value: ",".join(map(str, value)), deserializer=option_type.parse
        )
