"""EpochTimer's own memory and cost per step stay flat however long the epoch: its hooks, driven directly
for 200,000 steps of a trivial step (Lightning's loop would take minutes here and measure itself)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from types import SimpleNamespace

import pytest
import torch

from cifarbench.callbacks import EpochTimer

STEPS = 200_000
WINDOW = 20_000  # steps per timing window: the first and the last are compared


def stub_trainer(log_dir: str) -> SimpleNamespace:
    """What EpochTimer reads from a Trainer, and nothing else: no loggers, one CPU process."""
    progress = SimpleNamespace(is_last_batch=False)
    return SimpleNamespace(
        strategy=SimpleNamespace(
            root_device=torch.device("cpu"),
            batch_to_device=lambda batch, *args, **kwargs: batch,
            training_step=lambda *args, **kwargs: None,
            optimizer_step=lambda *args, **kwargs: None,
        ),
        is_global_zero=True,
        progress_bar_callback=None,
        train_dataloader=None,
        callbacks=[],
        save_checkpoint=lambda *args, **kwargs: None,
        loggers=[],
        log_dir=log_dir,
        default_root_dir=log_dir,
        log_every_n_steps=50,
        global_step=0,
        current_epoch=0,
        world_size=1,
        precision="32-true",
        sanity_checking=False,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
    )


@pytest.mark.slow
def test_a_200k_step_epoch_keeps_the_callbacks_memory_and_cost_per_step_flat(tmp_path):
    timer = EpochTimer(print_table=False)
    trainer, module = stub_trainer(str(tmp_path)), torch.nn.Linear(1, 1)
    batch = (torch.zeros(4, 1), torch.zeros(4))
    timer.setup(trainer, module, "fit")
    timer.on_fit_start(trainer, module)
    timer.on_train_epoch_start(trainer, module)
    # The suite's own heap (hundreds of tests' objects) would make every full garbage collection here slower
    # than in a process of its own: freeze it, so that only what the callback makes is collected.
    gc.collect()
    gc.freeze()
    tracemalloc.start()
    window_s, baseline = [], None
    start = time.perf_counter()
    for step in range(STEPS):
        timer.on_train_batch_start(trainer, module, batch, step)
        trainer.strategy.training_step()  # EpochTimer's wrapper marks the user's step
        timer.on_before_backward(trainer, module, None)
        timer.on_after_backward(trainer, module)
        timer.on_before_optimizer_step(trainer, module, None)
        trainer.strategy.optimizer_step()  # EpochTimer's wrapper marks the optimizer step's end
        trainer.global_step += 1
        timer.on_train_batch_end(trainer, module, None, batch, step)
        if step == 999:
            baseline = tracemalloc.get_traced_memory()[0]
        if (step + 1) % WINDOW == 0:
            window_s.append(time.perf_counter() - start)
            start = time.perf_counter()
    grown, peak = tracemalloc.get_traced_memory()[0] - baseline, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    gc.unfreeze()
    timer.on_train_epoch_end(trainer, module)
    timer.teardown(trainer, module, "fit")

    (epoch,) = timer.history
    assert epoch.steps == STEPS and epoch.samples == 4 * STEPS
    assert grown < 256 * 1024, f"the callback's memory grew {grown / 1e6:.2f} MB over {STEPS:,} steps"
    assert peak < 3 * 1024 * 1024, f"peak {peak / 1e6:.2f} MB"
    # Cost per step: the last window of steps is no slower than the first (a list kept per step would be).
    assert window_s[-1] < 1.5 * window_s[0], [f"{s:.2f}" for s in window_s]
