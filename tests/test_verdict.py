"""Each verdict fires on the delay that should trigger it, in a real fit, and the others stay silent."""

from __future__ import annotations

import pytest

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.verdict import GENERIC_ADVICE, verdict
from cifarbench.fitting import ADVICE

from helpers import SleepyModule, SlowCheckpointIO, loader, quiet_trainer

# Timings against injected delays: one torch thread (conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 8
STEP = 0.05  # the training step's own sleep in every scenario: the work that is not the bottleneck


# scenario -> (module delays, loader delay per batch, Trainer options)
SCENARIOS = {
    "input_bound": ({}, 0.05, {}),
    "transfer_bound": ({"copy_delay": 0.05}, 0.0, {}),
    "validation_heavy": ({"val_delay": 0.2}, 0.0, {"limit_val_batches": 2}),
    "checkpoint_heavy": ({}, 0.0, {"enable_checkpointing": True, "plugins": [SlowCheckpointIO(0.6)]}),
    "first_step_heavy": ({"first_step_delay": 1.0}, 0.0, {}),
    "startup_heavy": ({"setup_delay": 1.0}, 0.0, {}),
    "optimizer_heavy": ({"optimizer_delay": 0.05}, 0.0, {}),
    "compute_bound": ({}, 0.0, {}),
}


def fit_scenario(tmp_path, name: str) -> EpochTimer:
    delays, per_batch, options = SCENARIOS[name]
    timer = EpochTimer(print_table=False)
    trainer = quiet_trainer(tmp_path, timer, **options)
    val = loader(0.0, steps=2) if "limit_val_batches" in options else None
    trainer.fit(SleepyModule(step_delay=STEP, **delays), loader(per_batch, steps=STEPS), val)
    return timer


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_verdict_fires_on_its_own_delay_and_only_there(tmp_path, scenario):
    timer = fit_scenario(tmp_path, scenario)
    kinds = [finding.kind for finding in timer.verdict]
    assert kinds == ["summary", scenario], [finding.text for finding in timer.verdict]
    text = timer.verdict[1].text
    assert " s" in text and "%" in text  # it names the evidence: seconds and a share
    assert GENERIC_ADVICE[scenario] in text  # a foreign project gets the generic advice


def test_the_cli_names_its_own_options_in_the_advice():
    budget = dict.fromkeys(
        ("startup", "sanity_check", "first_step", "forward", "backward", "optimizer", "step_other"), 0.1
    )
    budget |= {"data_loading": 5.0, "validation": 0.0, "checkpointing": 0.0, "other": 0.0}
    findings = verdict(budget, transfer_s=0.0, advice=ADVICE)
    assert [finding.kind for finding in findings] == ["summary", "input_bound"]
    assert "--data.num_workers" in findings[1].text and "--data.pipeline" in findings[1].text
    assert set(ADVICE) == set(GENERIC_ADVICE)  # the CLI has advice for every kind


def test_several_findings_come_largest_first_and_at_most_three():
    budget = {name: 0.1 for name in ("sanity_check", "forward", "backward", "step_other", "other")}
    budget |= {"startup": 5.5, "first_step": 4.0, "data_loading": 0.5, "optimizer": 0.1, "validation": 5.0,
               "checkpointing": 2.0}  # fmt: skip
    findings = verdict(budget, transfer_s=0.0)
    # Four rules fire (checkpointing is 11% of the fit too); the three largest are shown.
    assert [finding.kind for finding in findings] == [
        "summary", "startup_heavy", "validation_heavy", "first_step_heavy"
    ]  # fmt: skip
    assert verdict(budget | {"startup": 0.1}, transfer_s=0.0)[-1].kind == "checkpoint_heavy"
