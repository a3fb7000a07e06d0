"""``python -m cifarbench lab PART [lab options] [fit options]``: a part of the lab, or ``all`` and report.md.

The parts and their options come from the registry (:data:`cifarbench.lab.parts.PARTS`): ``lab --help`` lists
the parts, ``lab c3 --help`` the options of c3's ``run``. Every option the lab does not know is a ``fit``
option and is passed to each run unchanged, in order.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from jsonargparse import ArgumentParser, Namespace

from cifarbench.commands.parsing import bools_as_flags, new_parser, split_known
from cifarbench.fitting import check_writable
from cifarbench.lab.context import LabContext, shell_command
from cifarbench.lab.options import register_option_types
from cifarbench.lab.parts import PARTS
from cifarbench.lab.questions import inspect_model, to_markdown
from cifarbench.lab.report import write_report
from cifarbench.lab.result import PartResult
from cifarbench.quiet import lab_run_output

SUMMARY = "the lab's parts (C2-C8, and all with report.md), each through fit with config overrides"
ALL = "all"


@dataclass
class LabOptions:
    """Options of every lab part; any other option is a fit option, passed to every run.

    Args:
        out: where results go (default: <trainer.default_root_dir or .>/lightning_logs/lab).
        quick: synthetic data, few small batches, two epochs: a few minutes on a 2-core CPU.
        verbose: show Lightning's own output for every run (banner, progress bar, model summary).
    """

    out: str | None = None
    quick: bool = False
    verbose: bool = False


def build_parser() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    """The lab's parser (one subcommand per part, and ``all``) and each subcommand's own parser."""
    register_option_types()
    parser = new_parser(
        "python -m cifarbench lab",
        "Run a part of the lab (or all of them, with report.md). Options a part does not take go to fit.",
    )
    subcommands = parser.add_subcommands(dest="part")
    part_parsers = {}
    for name, parts in [*((name, [part]) for name, part in PARTS.items()), (ALL, list(PARTS.values()))]:
        title = parts[0].TITLE if name != ALL else "every part, then report.md with Q1-Q4"
        part_parser = new_parser(
            f"python -m cifarbench lab {name}",
            f"{title}. Every option not listed here is a fit option (python -m cifarbench fit --help), "
            f"e.g. --trainer.accelerator gpu --data.synthetic 50000.",
        )
        part_parser.add_class_arguments(LabOptions, as_group=False)
        for part in parts:
            if _options_of(part):
                part_parser.add_function_arguments(part.run, skip={"ctx"}, as_group=False)
        bools_as_flags(part_parser)
        subcommands.add_subcommand(name, part_parser, help=title)
        part_parsers[name] = part_parser
    return parser, part_parsers


@dataclass
class LabCall:
    """One ``lab`` command, parsed: the part, its options, the lab options as given, and the fit options."""

    part: str
    options: Namespace
    own: list[str]
    fit_overrides: list[str]
    part_parsers: dict[str, ArgumentParser]  # every part's parser, to repeat each part's own command


def parse_lab_args(argv: list[str]) -> LabCall:
    """Split ``lab PART ...`` into the part's own options (parsed) and the fit options (kept in order)."""
    parser, part_parsers = build_parser()
    name = argv[0] if argv else None
    if name not in part_parsers:
        parser.parse_args(argv)  # prints the help for -h, or raises the parser's error naming the part
        raise SystemExit(0)
    own, fit_overrides = split_known(part_parsers[name], argv[1:])
    return LabCall(name, parser.parse_args([name, *own])[name], own, fit_overrides, part_parsers)


def main(argv: list[str]) -> None:
    """``lab PART ...``: parse, check the output folder, run the part (or every part and the report)."""
    call = parse_lab_args(argv)
    name, options, own, fit_overrides = call.part, call.options, call.own, call.fit_overrides
    out_dir = Path(options.out) if options.out else default_out_dir(fit_overrides)
    check_writable(out_dir, option="--out")  # before any run, not when the first part writes its table
    ctx = LabContext(
        out_dir=out_dir,
        overrides=fit_overrides,
        quick=options.quick,
        verbose=options.verbose,
        command=_command(name, own, fit_overrides),
    )
    with lab_run_output(options.verbose):
        if name == ALL:
            _run_all(options, own, call.part_parsers, ctx)
        else:
            run_part(PARTS[name], options, _command(name, own, fit_overrides), ctx)


def default_out_dir(fit_overrides: list[str]) -> Path:
    """``<trainer.default_root_dir>/lightning_logs/lab``, following the fit option when it is given."""
    root = "."
    for index, arg in enumerate(fit_overrides):
        if arg == "--trainer.default_root_dir" and index + 1 < len(fit_overrides):
            root = fit_overrides[index + 1]
        elif arg.startswith("--trainer.default_root_dir="):
            root = arg.split("=", 1)[1]
    return Path(root) / "lightning_logs" / "lab"


def run_part(part: ModuleType, options: Namespace, command: str, ctx: LabContext) -> PartResult:
    start = time.perf_counter()
    print(f"[lab] {part.NAME}: {part.TITLE} (results in {ctx.out_dir / part.NAME})", flush=True)
    result = part.run(ctx, **{key: options[key] for key in _options_of(part)})
    md_path = result.write_markdown(command)
    print(f"[lab] {part.NAME}: done in {time.perf_counter() - start:.1f} s -> {md_path}", flush=True)
    return result


def _run_all(
    options: Namespace, own: list[str], part_parsers: dict[str, ArgumentParser], ctx: LabContext
) -> None:
    start = time.perf_counter()
    results = []
    for index, part in enumerate(PARTS.values(), start=1):
        print(f"[lab all] part {index}/{len(PARTS)}: {part.NAME}", flush=True)
        # The command that makes this part alone: only the lab options its own parser takes.
        part_own, _ = split_known(part_parsers[part.NAME], own)
        command = _command(part.NAME, part_own, ctx.overrides)
        results.append((run_part(part, options, command, ctx), command))
    print("[lab all] Q1-Q4: inspecting the model", flush=True)
    report = write_report(
        ctx.out_dir,
        results,
        to_markdown(inspect_model("batch")),
        questions_command="python -m cifarbench inspect",
        command=ctx.command,
        quick=ctx.quick,
    )
    print(f"[lab all] done in {time.perf_counter() - start:.1f} s -> {report}", flush=True)


def _options_of(part: ModuleType) -> list[str]:
    """The names of a part's own options: the parameters of its ``run`` after ``ctx``."""
    return list(inspect.signature(part.run).parameters)[1:]


def _command(part: str, own: list[str], fit_overrides: list[str]) -> str:
    return f"python -m cifarbench {shell_command(['lab', part, *own, *fit_overrides])}"
