"""What ``tune`` leaves: ``tune.md`` (the chain of trials) and a PNG of samples/s per trial."""

from __future__ import annotations

from pathlib import Path

from cifarbench.lab.context import shell_command
from cifarbench.plots import grouped_bars
from cifarbench.tables import markdown_table
from cifarbench.tuning.moves import FIT_TIME, MEASURE, THROUGHPUT
from cifarbench.tuning.search import Search, Trial

COLUMNS = ("trial", "move", "kind of move", "finding", "predicted saving", "measured", "kept", "samples/s")
READING = """How to read it: each trial is a short fit of {steps} steps per epoch, 2 epochs (the first, with
its start-up, kept apart); samples/s is the second epoch's. A move answers the best run's largest finding and
is judged on that finding's measure: samples/s for the loading and step findings, the fit's time per epoch
for validation and checkpointing. *Predicted saving* is the finding's bound (the most removing its cause can
save, as a share of the epoch or the fit); *measured* is the gain on the measure. A move is kept when its gain
beats the noise of its measure: the two baseline runs of the same config differed by {rate:.1%} in samples/s
and {fit:.1%} in fit time per epoch, start-up left out (and at least 1% is asked).
Each trial is a normal run folder under `trials/`: `python -m cifarbench compare {out}/trials` shows them side
by side."""


def row(trial: Trial) -> dict[str, str]:
    finding = trial.finding
    share = finding.get("share")
    kept = {True: "kept", False: "not kept", None: "-"}[trial.kept]
    return {
        "trial": trial.name,
        "move": trial.move.name if trial.move else "(the config given)",
        "kind of move": trial.move.effect if trial.move else "-",
        "finding": str(finding.get("kind", "-")).replace("_", "-"),
        "predicted saving": f"{share:.0%}" if isinstance(share, int | float) else "-",
        "measured": f"{trial.gain:+.1%} {MEASURE.get(finding.get('kind', ''), THROUGHPUT)}"
        if trial.gain is not None
        else (trial.note or "-"),
        "kept": kept if not trial.note or trial.kept else f"{kept} ({trial.note})",
        "samples/s": f"{trial.throughput:,.0f}" if trial.run else "-",
    }


def write_report(search: Search, best: Trial | None, command: str) -> Path:
    """``tune.md`` for the search so far (also when it was interrupted) and the PNG; returns tune.md."""
    out = search.out_dir
    lines = [f"# cifarbench tune ({search.status})", "", f"Command: `{command}`", ""]
    noise = search.noise
    rate, fit = noise.get(THROUGHPUT, 0.0), noise.get(FIT_TIME, 0.0)
    reading = READING.format(steps=search.steps, rate=rate, fit=fit, out=out)
    lines += [reading, ""]
    lines += [markdown_table([row(trial) for trial in search.history], COLUMNS), ""]
    measured = [trial for trial in search.history if trial.run]
    baseline = search.baseline_throughput
    if best is not None and best.move is None:
        lines += ["No move was kept: the config given is the best one found.", ""]
    elif best is not None and baseline:
        speedup = best.throughput / baseline
        lines += [f"Best: {best.name}, {best.throughput:,.0f} samples/s, {speedup:.2f}x the baseline's "
                  f"{baseline:,.0f} (the mean of its two runs).", ""]  # fmt: skip
        lines += [f"Its fit options: `{shell_command(best.options)}`", ""]
    if search.stop_reason:
        lines += [f"Stopped: {search.stop_reason}.", ""]
    if search.not_applied:
        lines += ["Moves that change training, not applied (`--allow changes-training` applies them):", ""]
        for move, finding in search.not_applied:
            share = finding.get("share")
            predicted = f", predicted saving up to {share:.0%}" if isinstance(share, int | float) else ""
            lines.append(f"- {move.name} (`{' '.join(move.overrides) or 'computed'}`) for "
                         f"{str(finding.get('kind')).replace('_', '-')}{predicted}")  # fmt: skip
        lines.append("")
    if measured:
        grouped_bars(
            out / "tune.png",
            [trial.name for trial in measured],
            {"samples/s (second epoch)": [trial.throughput for trial in measured]},
            title="Samples/s per trial",
            xlabel="trial",
            ylabel="samples/s",
        )
        lines += ["![samples/s per trial](tune.png)", ""]
    path = out / "tune.md"
    path.write_text("\n".join(lines))
    return path
