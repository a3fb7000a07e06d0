"""``python -m cifarbench VERB ...`` and the ``cifarbench`` script: dispatch to a verb, and the one place that
turns errors into messages and exit statuses.

Exit statuses: 0 done; 1 training failed (a DataLoader worker died, another rank was lost, the loss diverged,
or Ctrl-C); 2 bad
input (an option, a file, a folder: the message names it and the fix; or a checkpoint that could not be
saved); 143 stopped by SIGTERM (finished epochs kept).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import ModuleType

import torch.distributed
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifarbench.errors import CifarbenchError

try:  # the command line is the [cli] extra; `pip install cifarbench` alone is the reusable callbacks
    from jsonargparse import ArgumentError

    from cifarbench.callbacks.divergence import TrainingDiverged
    from cifarbench.commands import compare, fit, inspect, lab, tune
    from cifarbench.commands.parsing import explain
    from cifarbench.fitting import run_cli
    from cifarbench.quiet import configure_console

    MISSING_EXTRA: str | None = None
except ModuleNotFoundError as missing:
    MISSING_EXTRA = missing.name

# Verb -> the module that runs it; each has SUMMARY and main(argv), which raises instead of exiting.
VERBS: dict[str, ModuleType] = (
    {"fit": fit, "tune": tune, "lab": lab, "inspect": inspect, "compare": compare}
    if MISSING_EXTRA is None
    else {}
)
# LightningCLI's other subcommands share fit's parser and defaults.
LIGHTNING_VERBS = ("validate", "test", "predict")


def usage() -> str:
    lines = ["usage: python -m cifarbench VERB [options]   (VERB --help for its options)", "", "verbs:"]
    lines += [f"  {name:<10}{module.SUMMARY}" for name, module in VERBS.items()]
    lines.append(f"  {', '.join(LIGHTNING_VERBS)}: LightningCLI's other subcommands, with fit's options")
    return "\n".join(lines)


def _verb(argv: list[str]) -> Callable[[list[str]], object]:
    name = argv[0] if argv else None
    if name in VERBS:
        return VERBS[name].main
    if name in LIGHTNING_VERBS:
        return run_cli
    if name in (None, "-h", "--help"):
        print(usage())
        raise SystemExit(0)
    raise CifarbenchError(
        f"{name!r} is not a verb of cifarbench: use one of {', '.join([*VERBS, *LIGHTNING_VERBS])}"
    )


def main(args: list[str] | None = None) -> None:
    """Run ``python -m cifarbench ARGS`` (``args`` for in-process use; default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if args is None else list(args)
    if MISSING_EXTRA is not None:
        _error(
            f"error: the command line needs cifarbench's [cli] extra ({MISSING_EXTRA} is not installed): "
            f"pip install 'cifarbench[cli]'. The callbacks alone need nothing more (from "
            f"cifarbench.callbacks import EpochTimer)."
        )
        raise SystemExit(2)
    configure_console()
    try:
        verb = _verb(argv)
        verb(argv if verb is run_cli else argv[1:])
    except SIGTERMException:
        # Lightning stops at the next step boundary and exits with status 0; a stopped run should not
        # look like a finished one to a scheduler or a shell script.
        _error(
            "stopped by SIGTERM. Finished epochs are kept (timings.csv, checkpoints); resume with "
            "--ckpt_path last."
        )
        raise SystemExit(128 + signal.SIGTERM) from None
    except (CifarbenchError, MisconfigurationException) as error:
        _error(f"error: {error}")
        raise SystemExit(2) from None
    except ArgumentError as error:
        verb_name = argv[0] if argv else ""
        _error(
            f"error: {explain(error, argv)}. See `python -m cifarbench {verb_name} --help` for the options."
        )
        raise SystemExit(2) from None
    except TrainingDiverged as error:
        _error(f"error: {error}")
        raise SystemExit(1) from None
    except Exception as error:
        if _is_lost_rank(error):
            _error(
                f"error: this rank lost another rank of the distributed run (it stopped or died, or its node "
                f"or the network did), so training stopped here too. Epochs that finished are kept in the "
                f"run's timings.csv and timings_ranks.csv (rank 0 writes them); the first failure is in the "
                f"other rank's output. The collective reported:\n{type(error).__name__}: {_first_line(error)}"
            )
            raise SystemExit(1) from None
        if not _is_dataloader_worker_failure(error):
            raise
        _error(
            f"error: a DataLoader worker failed, so training stopped. Epochs that finished are kept in the "
            f"run's timings.csv and checkpoints. To see the failure in the main process, run with "
            f"--data.num_workers 0. The worker reported:\n{type(error).__name__}: {error}"
        )
        raise SystemExit(1) from None


def _error(message: str) -> None:
    print(f"cifarbench: {message}", file=sys.stderr)


# What a collective raises when a peer is gone: torch's DistError family (NCCL, the store, timeouts), or
# gloo's transport errors, which torch raises as a plain RuntimeError.
_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "gloo/transport/")


def _is_lost_rank(error: BaseException) -> bool:
    if isinstance(error, getattr(torch.distributed, "DistError", ())):
        return True
    return isinstance(error, RuntimeError) and any(mark in str(error) for mark in _LOST_PEER)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:500] if lines else ""


def _is_dataloader_worker_failure(error: BaseException) -> bool:
    # torch re-raises a worker's exception in the main process ("Caught X in DataLoader worker process N"),
    # and reports a worker that died as "DataLoader worker (pid(s) N) exited unexpectedly".
    return "DataLoader worker" in str(error)


if __name__ == "__main__":
    main()
