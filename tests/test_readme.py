"""The README's reuse example runs as written, on a module and loader that are not cifarbench's."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import SleepyModule, loader

README = Path(__file__).resolve().parents[1] / "README.md"


def test_reuse_example_runs_and_prints_each_epoch(tmp_path, monkeypatch, capsys):
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(example.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)  # the example's Trainer writes lightning_logs/ into the working directory
    exec(example, {"my_module": SleepyModule(step_delay=0.01), "my_loader": loader(0.0, steps=3)})
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in printed] == ["epoch 0", "epoch 1", "epoch 2"]
    assert (tmp_path / "lightning_logs" / "version_0" / "timings.csv").is_file()
