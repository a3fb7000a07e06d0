"""While a fit runs: the last epoch's shares on Lightning's progress bar, and a line when the verdict moves.

From the second epoch on the bar shows ``time: data 4% · fwd 31% · bwd 55% · opt 7%`` (the previous epoch's
data loading, forward, backward and optimizer as shares of its wall time), added to what the bar's
``get_metrics`` returns: the bar asks at its own refresh, so nothing is added to the step, and a fit without a
bar costs nothing. TQDM's and Rich's bars both show ``get_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

from cifarbench.callbacks.quantities import Budget, Q
from cifarbench.callbacks.verdict import verdict

# The progress bar's key for the shares, and what each share is labelled.
KEY = "time"
_SHOWN = ((Q.data_loading, "data"), (Q.forward, "fwd"), (Q.backward, "bwd"), (Q.optimizer, "opt"))
_WRAPS = "__cifarbench_wraps__"


def shares(row: Any) -> dict[str, float]:
    """The epoch's parts as shares of its wall time, by their short labels."""
    epoch_s = getattr(row, Q.epoch.column_name)
    return {label: getattr(row, q.column_name) / epoch_s if epoch_s > 0 else 0.0 for q, label in _SHOWN}


def shares_text(row: Any) -> str:
    return " · ".join(f"{label} {share:.0%}" for label, share in shares(row).items())


def epoch_kind(row: Any, advice: Mapping[str, str]) -> tuple[str, str]:
    """The kind and text of the epoch's own largest finding (its steps only, the fit's spans left out)."""
    parts = {q.name: getattr(row, q.column_name) for q in (Q.data_loading, *_PARTS, Q.profiler)}
    findings = verdict(Budget(**parts), getattr(row, Q.transfer.column_name), advice)
    finding = findings[1] if len(findings) > 1 else findings[0]
    return finding.kind, finding.text


_PARTS = (Q.forward, Q.backward, Q.optimizer, Q.framework, Q.step_other)


class EpochProgress:
    """Shows the last epoch's shares on the bar and prints a line when an epoch's verdict differs."""

    def __init__(self, bar: ProgressBar | None, advice: Mapping[str, str]) -> None:
        self.advice = advice
        self.text: str | None = None
        self.kind: str | None = None
        if bar is not None:
            original = getattr(bar.get_metrics, _WRAPS, bar.get_metrics)  # one wrapper, however many fits
            bar.get_metrics = self._with_shares(original)  # type: ignore[method-assign]

    def epoch_ended(self, row: Any, say: bool) -> None:
        """The epoch's row; ``say``: print a line if its verdict differs from the last epoch's."""
        self.text = shares_text(row)
        kind, text = epoch_kind(row, self.advice)
        epoch = getattr(row, Q.index.column_name)
        if say and self.kind is not None and kind != self.kind:
            was, now = self.kind.replace("_", "-"), kind.replace("_", "-")
            print(f"EpochTimer: epoch {epoch} is {now} (was {was}): {text}", flush=True)
        self.kind = kind

    def _with_shares(self, original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        def get_metrics(*args: Any, **kwargs: Any) -> dict[str, Any]:
            metrics = original(*args, **kwargs)
            return {**metrics, KEY: self.text} if self.text else metrics

        setattr(get_metrics, _WRAPS, original)
        return get_metrics
