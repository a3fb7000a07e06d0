"""The lab's parts, in the seed report's order: the one registry that ``lab`` and ``report.md`` read.

Each part module exports ``NAME``, ``TITLE`` and ``run(ctx, **options) -> PartResult``; its options are the
parameters of ``run`` after ``ctx``, typed and documented there, and ``lab <part> --help`` is built from them.
"""

from types import ModuleType

from cifarbench.lab.parts import c2, c3, c4, c5, c6, c7, c8

PARTS: dict[str, ModuleType] = {part.NAME: part for part in (c2, c3, c4, c5, c6, c7, c8)}
