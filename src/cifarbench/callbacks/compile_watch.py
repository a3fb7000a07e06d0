"""CompileWatch: say so when torch.compile quietly loses its speed-up.

Two traps cost a compiled run its speed without an error: graphs compiled again after the first epoch (a batch
of a new shape, a changed guard: each costs about as much as the first compile), and CUDA graphs skipped
(mode ``reduce-overhead`` or ``max-autotune`` then runs without them, for example after an input mutation
torch cannot record). Both are counted by torch itself; this callback reads the counts once per epoch and
warns with what it found.
"""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

# Where torch counts compiled graphs and CUDA-graph skips, and logs why it skipped (torch 2.4 to 2.15).
_CUDAGRAPH_LOGGER = "torch._inductor.cudagraph_utils.__cudagraphs"


def compile_counters() -> tuple[int, int]:
    """(graphs compiled by dynamo so far, CUDA-graph skips so far) in this process; (0, 0) if unknown."""
    try:
        # torch's own bookkeeping: private, so read defensively, and imported late (loading dynamo takes time,
        # and only a compiled run needs it).
        from torch._dynamo.utils import counters
    except ImportError:
        return 0, 0
    return int(counters["stats"]["unique_graphs"]), int(counters["inductor"]["cudagraph_skips"])


class _SkipReasons(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(record.getMessage().splitlines()[0].strip())


class CompileWatch(Callback):
    """Warns when a compiled model compiles new graphs after its first epoch, or when CUDA graphs are skipped.

    Args:
        cuda_graphs: the model's compile mode uses CUDA graphs (``reduce-overhead``, ``max-autotune``): a skip
            on a CUDA device is then worth a warning (on a CPU every graph "skips" them).
    """

    def __init__(self, cuda_graphs: bool = False) -> None:
        super().__init__()
        self.cuda_graphs = cuda_graphs
        self.graphs_per_epoch: list[int] = []
        self.skips = 0
        self._last = (0, 0)
        self._handler = _SkipReasons()

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.graphs_per_epoch, self.skips, self._last = [], 0, compile_counters()
        self._handler.reasons.clear()
        logging.getLogger(_CUDAGRAPH_LOGGER).addHandler(self._handler)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        graphs, skips = compile_counters()
        new_graphs, new_skips = graphs - self._last[0], skips - self._last[1]
        self._last = (graphs, skips)
        self.graphs_per_epoch.append(new_graphs)
        if new_graphs and len(self.graphs_per_epoch) > 1:
            epoch = trainer.current_epoch
            rank_zero_warn(
                f"torch.compile compiled {new_graphs} new graph(s) in epoch {epoch}, after the first: a "
                f"batch of a new shape or a changed guard, each costing about a first compile. Keep batch "
                f"shapes fixed (drop_last=True in the training DataLoader); TORCH_LOGS=recompiles tells why."
            )
        if self.cuda_graphs and new_skips and trainer.strategy.root_device.type == "cuda":
            self.skips += new_skips
            reason = self._handler.reasons[-1] if self._handler.reasons else "see TORCH_LOGS=cudagraphs"
            rank_zero_warn(
                f"torch.compile skipped CUDA graphs {new_skips} time(s) in epoch {trainer.current_epoch} "
                f"({reason}): the graphs run without them, and the speed-up of reduce-overhead is lost."
            )

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logging.getLogger(_CUDAGRAPH_LOGGER).removeHandler(self._handler)

    @override
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        logging.getLogger(_CUDAGRAPH_LOGGER).removeHandler(self._handler)
