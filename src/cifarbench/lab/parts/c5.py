"""C5: the same config on GPU and on CPU: average times over the epochs and the speed-up."""

from __future__ import annotations

import torch

from cifarbench.lab.context import LabContext
from cifarbench.lab.result import PartResult
from cifarbench.lab.runs import fit_once
from cifarbench.plots import grouped_bars
from cifarbench.tables import markdown_table, write_csv

NAME = "c5"
TITLE = "C5: GPU vs CPU"
COLUMNS = ("device", "data_loading_s", "training_s", "epoch_s", "epochs")
KEYS = ("data_loading_s", "training_s", "epoch_s")


def run(ctx: LabContext) -> PartResult:
    folder = ctx.part_dir(NAME)
    has_gpu = torch.cuda.is_available()
    devices = ["gpu", "cpu"] if has_gpu else ["cpu"]
    rows, runs = [], []
    for device in devices:
        result = fit_once(ctx, NAME, device, ["--trainer.accelerator", device, "--trainer.devices", "1"])
        runs.append(result)
        # The lab averages over all epochs; so does this table (epoch 0 included).
        rows.append(
            {"device": device, **{key: result.mean(key) for key in KEYS}, "epochs": len(result.epochs)}
        )
    if has_gpu:
        gpu, cpu = rows
        rows.append(
            {"device": "speed-up (cpu / gpu)", **{key: cpu[key] / gpu[key] for key in KEYS}, "epochs": None}
        )
    csv_path = write_csv(folder / "c5.csv", rows, COLUMNS)
    measured = rows[: len(devices)]
    figure = grouped_bars(
        folder / "c5_gpu_vs_cpu.png",
        ["data loading", "training", "epoch"],
        {row["device"]: [row[key] for key in KEYS] for row in measured},
        title="C5: average time per epoch by device",
        xlabel="part of the epoch",
        ylabel="time per epoch (s)",
    )
    note = (
        f"GPU: {torch.cuda.get_device_name(0)}."
        if has_gpu
        else "**No GPU on this machine** (torch.cuda.is_available() is False): only the CPU side ran, so "
        "there is no speed-up to report. Run `lab c5` on a CUDA machine for the comparison."
    )
    markdown = f"{note}\n\n{markdown_table(rows, COLUMNS)}\n\n![C5 GPU vs CPU]({figure.name})"
    return PartResult(NAME, TITLE, markdown, folder, csv_path, [figure], runs)
