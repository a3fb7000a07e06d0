"""Inside the step and around it: injected, known delays in the forward, the backward, the optimizer, setup,
validation and checkpoint saves, recovered by EpochTimer's phases and fit budget."""

from __future__ import annotations

import json
import time

import lightning as L
import pytest
import torch
from torch import nn

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.quantities import BUCKET_ORDER

from helpers import (
    Delay,
    SleepyModule,
    SlowBackward,
    SlowCheckpointIO,
    SlowSGD,
    Stopwatch,
    assert_within,
    loader,
    quiet_trainer,
)

# Timings against injected delays: one torch thread (conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 8
FORWARD, BACKWARD, OPTIMIZER = 0.03, 0.02, 0.02  # per step


@pytest.fixture(scope="module", autouse=True)
def warm_process(tmp_path_factory):
    """One small fit first: the first forward and backward in a process pay one-off initialisation (about 25
    ms here), which is real work but would blur a comparison with the injected delays."""
    for precision in ("32-true", "bf16-mixed"):
        trainer(tmp_path_factory.mktemp("warm"), EpochTimer(print_table=False), precision=precision).fit(
            SleepyModule(backward_delay=0.001, optimizer_delay=0.001), loader(0.0, steps=2)
        )


def trainer(tmp_path, timer: EpochTimer, **kwargs) -> L.Trainer:
    return quiet_trainer(tmp_path, timer, *kwargs.pop("callbacks", []), **kwargs)


def phased_module() -> SleepyModule:
    return SleepyModule(step_delay=FORWARD, backward_delay=BACKWARD, optimizer_delay=OPTIMIZER)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_phases_recover_the_forward_backward_and_optimizer_delays(tmp_path, precision):
    module, timer = phased_module(), EpochTimer(print_table=False)
    trainer(tmp_path, timer, precision=precision).fit(module, loader(0.0, steps=STEPS))
    (epoch,) = timer.history
    assert_within(epoch.forward_s, module.step_work.total)
    assert_within(epoch.backward_s, module.backward_delay.total)
    assert_within(epoch.optimizer_s, module.optimizer_delay.total)
    assert epoch.step_other_s < 0.1 * BACKWARD * STEPS
    parts = epoch.forward_s + epoch.backward_s + epoch.optimizer_s + epoch.framework_s + epoch.step_other_s
    assert parts == pytest.approx(epoch.training_s)


def test_gradient_accumulation_has_optimizer_time_only_in_the_steps_that_step(tmp_path):
    module, timer = phased_module(), EpochTimer(print_table=False)
    trainer(tmp_path, timer, accumulate_grad_batches=2).fit(module, loader(0.0, steps=STEPS))
    (epoch,) = timer.history
    assert module.optimizer_delay.total == pytest.approx(STEPS / 2 * OPTIMIZER, rel=0.5)  # every other batch
    assert_within(epoch.optimizer_s, module.optimizer_delay.total)
    assert_within(epoch.backward_s, module.backward_delay.total)
    assert_within(epoch.forward_s, module.step_work.total)


class TwoOptimizers(L.LightningModule):
    """Manual optimization, GAN-style: forward, backward and step of one network, then of the other."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.first, self.second = nn.Linear(8, 2), nn.Linear(8, 2)
        self.forward_delay, self.second_forward_delay = Delay(FORWARD), Delay(FORWARD / 2)
        self.backward_delay, self.optimizer_delay = Delay(BACKWARD), Delay(OPTIMIZER)
        # The truths, timed where the work happens: the first network's forward, and what runs after the first
        # optimizer step but before the second backward, or after the second step (zero_grads, 2nd forward).
        self.first_forward, self.between = Stopwatch(), Stopwatch()

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        first_optimizer, second_optimizer = self.optimizers()
        with self.first_forward:
            self.forward_delay()
            loss = nn.functional.cross_entropy(self.first(inputs), targets)
        self.manual_backward(SlowBackward.apply(loss, self.backward_delay))
        first_optimizer.step()
        with self.between:
            first_optimizer.zero_grad()
            self.second_forward_delay()
            loss = nn.functional.cross_entropy(self.second(inputs), targets)
        self.manual_backward(SlowBackward.apply(loss, self.backward_delay))
        second_optimizer.step()
        with self.between:
            second_optimizer.zero_grad()

    def configure_optimizers(self):
        return [SlowSGD(network.parameters(), self.optimizer_delay) for network in (self.first, self.second)]


def test_a_manual_fit_with_two_optimizers_sums_backwards_and_optimizer_steps(tmp_path):
    module, timer = TwoOptimizers(), EpochTimer(print_table=False)
    trainer(tmp_path, timer).fit(module, loader(0.0, steps=STEPS))
    (epoch,) = timer.history
    assert_within(epoch.forward_s, module.first_forward.total)  # the first forward of each step
    assert_within(epoch.backward_s, module.backward_delay.total)  # both backwards
    assert_within(epoch.optimizer_s, module.optimizer_delay.total)  # both optimizer steps
    assert_within(epoch.step_other_s, module.between.total)  # the second network's forward, the zero_grads
    assert module.second_forward_delay.total < module.between.total


def test_the_fit_budget_recovers_every_injected_delay_and_adds_up_to_the_fit(tmp_path):
    module = SleepyModule(
        step_delay=FORWARD,
        backward_delay=BACKWARD,
        optimizer_delay=OPTIMIZER,
        val_delay=0.15,  # well above the few ms Lightning's eval loop adds around it on a slow machine
        setup_delay=0.5,
        first_step_delay=0.3,
    )
    train, saves = loader(0.04, steps=STEPS), SlowCheckpointIO(0.15)
    timer = EpochTimer(print_table=False)
    fit = trainer(
        tmp_path, timer, max_epochs=2, num_sanity_val_steps=2, limit_val_batches=2, enable_checkpointing=True,
        plugins=[saves],
    )  # fmt: skip
    start = time.perf_counter()
    fit.fit(module, train, loader(0.0, steps=2))
    wall_s = time.perf_counter() - start

    budget = timer.budget
    assert list(budget) == [bucket.name for bucket in BUCKET_ORDER]
    assert_within(sum(budget.values()), wall_s, tolerance=0.02)
    phases = {
        "forward": module.step_work,
        "backward": module.backward_delay,
        "optimizer": module.optimizer_delay,
    }
    assert_within(budget["startup"], module.setup_delay.total)
    assert_within(budget["sanity_check"], sum(module.val_delay.calls[:2]))  # the first two validation batches
    assert_within(budget["first_step"], sum(watch.calls[0] for watch in phases.values()))
    assert module.step_work.calls[0] > 0.3  # the first step's extra delay is in it
    for bucket, watch in phases.items():
        assert_within(budget[bucket], watch.after_first)
    assert_within(budget["data_loading"], train.fetch.total)
    assert_within(budget["validation"], sum(module.val_delay.calls[2:]))  # two epochs of 2 batches
    assert len(module.val_delay.calls) == 6
    assert_within(budget["checkpointing"], saves.delay.total)
    assert saves.delay.total >= 2 * 0.15  # a save per epoch

    document = json.loads((tmp_path / "fit_budget.json").read_text())
    assert document["buckets"] == pytest.approx(budget)
    assert document["fit_s"] == pytest.approx(sum(budget.values()))
    assert document["status"] == "finished" and document["verdict"][0]["kind"] == "summary"


class SlowSetupData(L.LightningDataModule):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.delay = Delay(seconds)

    def setup(self, stage: str) -> None:
        self.delay()

    def train_dataloader(self):
        return loader(0.0, steps=2)


@pytest.mark.parametrize("marked", [True, False], ids=["fit-start-marked", "from-the-first-hook"])
def test_a_slow_datamodule_setup_is_start_up_when_the_fit_start_is_marked(tmp_path, marked):
    """Lightning runs DataModule.setup before any callback hook: only a marked fit start shows it."""
    timer, data = EpochTimer(print_table=False), SlowSetupData(0.4)
    fit = trainer(tmp_path, timer)
    if marked:
        timer.mark_fit_start()
    fit.fit(SleepyModule(), datamodule=data)
    if marked:
        assert_within(timer.budget["startup"], data.delay.total)
    else:
        assert timer.budget["startup"] < 0.1 * data.delay.total


def test_an_interrupted_fit_still_writes_its_budget(tmp_path):
    class Crash(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 2:
                raise RuntimeError("boom")

    module, timer = SleepyModule(step_delay=FORWARD), EpochTimer(print_table=False)
    with pytest.raises(RuntimeError, match="boom"):
        trainer(tmp_path, timer, max_epochs=3, callbacks=[Crash()]).fit(module, loader(0.0, steps=4))
    document = json.loads((tmp_path / "fit_budget.json").read_text())
    assert document["status"] == "interrupted"
    assert [epoch.epoch for epoch in timer.history] == [0]  # epoch 1 did not finish
    # Every step that ran, the unfinished epoch's three included, is in the budget.
    steps_s = sum(document["buckets"][name] for name in ("first_step", "forward", "step_other"))
    assert_within(steps_s, module.step_work.total, tolerance=0.2)
    assert module.step_delay.total == pytest.approx(7 * FORWARD, rel=0.3)


def test_step_percentiles_and_the_slowest_step_come_from_the_steps(tmp_path):
    """One slow step in eight: p50 is a usual step, p90 and the max are the slow one (plus its loading)."""

    slow = Delay(0.2)

    class OneSlowStep(SleepyModule):
        def training_step(self, batch, batch_idx):
            if batch_idx == 5:
                slow()
            return super().training_step(batch, batch_idx)

    timer, module = EpochTimer(print_table=False), OneSlowStep(step_delay=FORWARD)
    train = loader(0.01, steps=STEPS)
    trainer(tmp_path, timer).fit(module, train)
    (epoch,) = timer.history
    # Each step's truth: its batch's loading and its training_step, timed where they happen.
    steps = [fetch + step for fetch, step in zip(train.fetch.calls, module.step_work.calls, strict=True)]
    steps[5] += slow.total
    assert_within(epoch.step_p50_s, sorted(steps)[STEPS // 2 - 1], tolerance=0.15)  # nearest rank: the 4th
    assert_within(epoch.step_max_s, max(steps), tolerance=0.1)
    assert epoch.step_p90_s == pytest.approx(epoch.step_max_s, rel=0.02)  # nearest rank of 8: the 8th
    assert epoch.peak_memory_bytes is None  # no honest per-epoch measure on a CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_event_and_synchronized_phases_agree(tmp_path):
    epochs = []
    for sync in (False, True):
        timer = EpochTimer(sync=sync, print_table=False)
        trainer(tmp_path / str(sync), timer, accelerator="gpu").fit(
            phased_module(), loader(0.01, steps=STEPS)
        )
        epochs.append(timer.history[0])
    events, synced = epochs
    assert events.clock == "cuda_events" and synced.clock == "cuda_sync"
    for name in ("forward_s", "backward_s", "optimizer_s", "training_s", "data_loading_s"):
        assert_within(getattr(events, name), getattr(synced, name), tolerance=0.05)
    assert events.peak_memory_bytes and events.peak_memory_bytes > 0


def test_a_fit_that_fails_before_the_timer_is_set_up_reports_nothing_and_the_next_fit_is_whole(tmp_path):
    """Lightning runs DataModule.setup before any callback hook; bad data there is not a fit to report."""

    class BrokenData(SlowSetupData):
        def setup(self, stage: str) -> None:
            raise OSError("data_batch_2 is truncated")

    timer = EpochTimer(print_table=False)
    timer.mark_fit_start()  # as the CLI does
    with pytest.raises(OSError, match="truncated"):
        trainer(tmp_path / "broken", timer).fit(SleepyModule(), datamodule=BrokenData(0.0))
    assert timer.budget is None and not (tmp_path / "broken" / "fit_budget.json").exists()
    trainer(tmp_path / "next", timer).fit(SleepyModule(step_delay=FORWARD), loader(0.0, steps=2))
    assert sum(timer.budget.values()) > 2 * FORWARD and (tmp_path / "next" / "fit_budget.json").is_file()


class CompiledSleepy(SleepyModule):
    """SleepyModule whose layer is compiled (dynamo's eager backend: real guards and graphs, no codegen)."""

    def __init__(self, **delays: float) -> None:
        super().__init__(**delays)
        self.layer.compile(backend="eager", dynamic=False)


def test_phases_are_marked_around_a_compiled_network(tmp_path):
    """The marks are Lightning's hooks, outside the compiled region: the sleeps around it are recovered."""
    module, timer = CompiledSleepy(step_delay=FORWARD, backward_delay=BACKWARD), EpochTimer(print_table=False)
    trainer(tmp_path, timer, max_epochs=2).fit(module, loader(0.0, steps=STEPS))
    forward = sum(epoch.forward_s for epoch in timer.history)
    backward = sum(epoch.backward_s for epoch in timer.history)
    # The first step compiles (inside the forward): the budget keeps it apart, in first_step.
    assert timer.budget["first_step"] > timer.budget["forward"] / (2 * STEPS - 1)
    assert_within(timer.budget["forward"], module.step_work.after_first)
    assert_within(backward, module.backward_delay.total)
    assert forward > module.step_delay.total
