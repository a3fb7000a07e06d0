"""``python -m cifarbench lab c2|c3|c4|c5|c6|c7|c8|all [lab options] [fit overrides]``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cifarbench.errors import ConfigError
from cifarbench.lab.context import LabContext, shell_command
from cifarbench.lab.result import PartResult

PARTS = ("c2", "c3", "c4", "c5", "c6", "c7", "c8")

USAGE = """\
usage: python -m cifarbench lab {c2,c3,c4,c5,c6,c7,c8,all} [lab options] [fit overrides]

Runs one part of the lab (or all of them, with report.md) through the normal fit path.

lab options:
  --out DIR          where results go (default: <trainer.default_root_dir or .>/lightning_logs/lab)
  --quick            synthetic data, few small batches, two epochs: a few minutes on a 2-core CPU
  --workers 0,4,8    c3: worker counts to sweep, in order (default 0,4,8,...,32; stops when loading
                     stops improving)
  --patience N       c3: counts in a row without improvement before the sweep stops (default 1)
  --best N           c4: the count to compare with 1 worker (default: c3's best, else 4)
  --modes a,b        c8: torch.compile modes next to eager (default: all three on CUDA, default on CPU)

fit overrides: any `python -m cifarbench fit` option, e.g. --trainer.accelerator cpu --data.synthetic 256
  --trainer.limit_train_batches 2 --trainer.max_epochs 3
"""


_EXAMPLES = {
    "--out": "results/lab",
    "--workers": "0,4,8",
    "--patience": "2",
    "--best": "4",
    "--modes": "default",
}


@dataclass
class LabOptions:
    part: str
    out: Path | None = None
    quick: bool = False
    workers: list[int] | None = None
    patience: int = 1
    best: int | None = None
    modes: list[str] | None = None
    fit_overrides: list[str] = field(default_factory=list)
    lab_args: list[str] = field(default_factory=list)  # the lab options as given, to repeat in commands


def _int_list(option: str, text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values or any(value < 0 for value in values):
        raise ConfigError(
            f"{option} {text!r} must be a comma-separated list of counts >= 0, e.g. {option} 0,4,8"
        )
    return values


def _whole_number(option: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{option} {text!r} must be a whole number >= {minimum}")
    return value


def parse_lab_args(argv: list[str]) -> LabOptions:
    """Split the lab's own options from the fit overrides, which pass through unchanged and in order.

    Done by hand rather than with argparse.parse_known_args, which may reorder or swallow the values of
    options it does not know (``--trainer.max_epochs 3``).
    """
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0)
    part = argv[0]
    if part not in (*PARTS, "all"):
        raise ConfigError(f"lab part {part!r} does not exist: use one of {', '.join(PARTS)} or all")
    options = LabOptions(part=part)
    rest = argv[1:]
    index = 0
    with_value = {"--out", "--workers", "--patience", "--best", "--modes"}
    while index < len(rest):
        arg = rest[index]
        name, equals, inline = arg.partition("=")
        if arg == "--quick":
            options.quick = True
            options.lab_args.append(arg)
        elif arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        elif name in with_value:
            if equals:
                value = inline
            elif index + 1 < len(rest):
                index += 1
                value = rest[index]
            else:
                raise ConfigError(
                    f"{name} needs a value, e.g. `{name} {_EXAMPLES[name]}` (see python -m cifarbench lab "
                    f"--help)"
                )
            options.lab_args += [name, value]
            _set_option(options, name, value)
        else:
            options.fit_overrides.append(arg)
        index += 1
    return options


def _set_option(options: LabOptions, name: str, value: str) -> None:
    if name == "--out":
        options.out = Path(value)
    elif name == "--workers":
        options.workers = _int_list(name, value)
    elif name == "--patience":
        options.patience = _whole_number(name, value, minimum=1)
    elif name == "--best":
        options.best = _whole_number(name, value, minimum=0)  # c3 may find 0 workers best
    elif name == "--modes":
        from cifarbench.model import COMPILE_MODES

        modes = [mode for mode in value.split(",") if mode]
        unknown = [mode for mode in modes if mode not in COMPILE_MODES]
        if not modes or unknown:
            raise ConfigError(f"--modes {value!r}: use a comma-separated list of {', '.join(COMPILE_MODES)}")
        options.modes = modes


def default_out_dir(fit_overrides: list[str]) -> Path:
    """``<trainer.default_root_dir>/lightning_logs/lab``, following the fit option when it is given."""
    root = "."
    for index, arg in enumerate(fit_overrides):
        if arg == "--trainer.default_root_dir" and index + 1 < len(fit_overrides):
            root = fit_overrides[index + 1]
        elif arg.startswith("--trainer.default_root_dir="):
            root = arg.split("=", 1)[1]
    return Path(root) / "lightning_logs" / "lab"


def _part_runner(part: str, options: LabOptions) -> Callable[[LabContext], PartResult]:
    from cifarbench.lab.parts import c2, c3, c4, c5, c6, c7, c8

    runners: dict[str, Callable[[LabContext], PartResult]] = {
        "c2": c2.run,
        "c3": lambda ctx: c3.run(ctx, options.workers or c3.DEFAULT_WORKERS, options.patience),
        "c4": lambda ctx: c4.run(ctx, options.best),
        "c5": c5.run,
        "c6": c6.run,
        "c7": c7.run,
        "c8": lambda ctx: c8.run(ctx, options.modes),
    }
    return runners[part]


def _command(part: str, options: LabOptions) -> str:
    return f"python -m cifarbench {shell_command(['lab', part, *options.lab_args, *options.fit_overrides])}"


def run_part(part: str, options: LabOptions, ctx: LabContext) -> PartResult:
    start = time.perf_counter()
    print(f"[lab] {part}: starting (results in {ctx.out_dir / part})", flush=True)
    result = _part_runner(part, options)(ctx)
    md_path = result.write_markdown(_command(part, options))
    print(f"[lab] {part}: done in {time.perf_counter() - start:.1f} s -> {md_path}", flush=True)
    return result


def lab_main(argv: list[str]) -> None:
    """Entry of ``python -m cifarbench lab ...`` (called from cifarbench.cli.main)."""
    from cifarbench.cli import check_writable  # cifarbench.cli imports this module when `lab` is asked for

    options = parse_lab_args(argv)
    out_dir = options.out or default_out_dir(options.fit_overrides)
    check_writable(out_dir, option="--out")  # before any run, not when the first part writes its table
    ctx = LabContext(
        out_dir=out_dir,
        overrides=options.fit_overrides,
        quick=options.quick,
        command=_command(options.part, options),
    )
    if options.part != "all":
        run_part(options.part, options, ctx)
        return
    _run_all(options, ctx)


def _run_all(options: LabOptions, ctx: LabContext) -> None:
    from cifarbench.inspection import inspect_model, to_markdown
    from cifarbench.lab.report import write_report

    start = time.perf_counter()
    results = []
    for index, part in enumerate(PARTS, start=1):
        print(f"[lab all] part {index}/{len(PARTS)}: {part}", flush=True)
        results.append((run_part(part, options, ctx), _command(part, options)))
    print("[lab all] Q1-Q4: inspecting the model", flush=True)
    questions = to_markdown(inspect_model("batch"))
    report = write_report(
        ctx.out_dir,
        results,
        questions,
        questions_command="python -m cifarbench inspect",
        command=ctx.command,
        quick=options.quick,
    )
    print(f"[lab all] done in {time.perf_counter() - start:.1f} s -> {report}", flush=True)
