"""What OpWindow's profiler saw, by EpochTimer's phase and operation: ops.csv, the table, the findings.

Each step in the window carries one ``record_function`` range per part of the step, named ``phase:<part>``
(:data:`PHASES`). An operation belongs to the phase whose range encloses it: its nearest enclosing range on
its own thread, or else (the autograd engine's thread on CUDA) the range that was open when it started. Its
*self* time (its time less its children's) is counted, so that a phase's operations, with the time in no
operation (``(outside operators)``: Python, hooks, waiting), add up to the phase's range.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cifarbench.callbacks.quantities import Q
from cifarbench.callbacks.verdict import Finding

OPS_CSV = "ops.csv"
OPS_FIELDS = ("phase", "operation", "calls", "self_host_s", "self_device_s", "share")
RANGE_PREFIX = "phase:"
#: The phases a step is split into (EpochTimer's parts, and the wait for the batch), in table order.
PHASES = tuple(
    q.name for q in (Q.data_loading, Q.forward, Q.backward, Q.optimizer, Q.framework, Q.step_other)
)
OUTSIDE = "(outside operators)"
STEP_EVENT = "ProfilerStep"  # torch's own range around each profiler step
# Host calls that queue work on the GPU (one per kernel, or per CUDA graph).
LAUNCHES = (
    "cudaLaunchKernel",
    "cuLaunchKernel",
    "cudaLaunchKernelExC",
    "cuLaunchKernelEx",
    "cudaGraphLaunch",
)
# Launch-bound: the GPU busy under half of the window's wall time, with kernels that average under 20 us. A
# launch costs the host about 5-10 us; kernels that short finish before the next is queued, so the GPU idles
# between them, and only fewer launches (CUDA graphs, a larger batch) help. A busier GPU is compute-bound.
LAUNCH_BOUND_BUSY = 0.5
SMALL_KERNEL_US = 20.0
_US = 1e-6


@dataclass
class OpRow:
    phase: str
    operation: str
    calls: int = 0
    host_s: float = 0.0
    device_s: float = 0.0
    share: float = 0.0  # of the phase's device time when the window recorded it, else of its host time


@dataclass
class OpSummary:
    """The window's operations by phase, and on CUDA how busy the GPU was.

    ``phase_s`` is each phase's time from its ranges (host clock); ``timer_s`` the same steps' phases as
    EpochTimer measured them (set at fit end); ``recorded_steps`` how many steps the profiler recorded.
    """

    rows: list[OpRow]
    phase_s: dict[str, float]
    recorded_steps: int
    first_recorded: int = 0  # the first recorded step's place among EpochTimer's profiled steps
    device_times: bool = False
    gpu_busy: float | None = None
    launches_per_step: float | None = None
    mean_kernel_us: float | None = None
    timer_s: dict[str, float] = field(default_factory=dict)

    def top(self, phase: str, n: int = 3) -> list[OpRow]:
        ranked = [row for row in self.rows if row.phase == phase and row.operation != OUTSIDE]
        return sorted(
            ranked, key=lambda row: row.device_s if self.device_times else row.host_s, reverse=True
        )[:n]

    @property
    def launch_bound(self) -> bool:
        return is_launch_bound(self.gpu_busy, self.mean_kernel_us)

    def timer_steps(self, profiled: Sequence[Any]) -> None:
        """EpochTimer's ``StepTimes`` of the profiled steps: those the profiler recorded, summed by phase."""
        steps = profiled[self.first_recorded : self.first_recorded + self.recorded_steps]
        self.timer_s = {
            phase: sum(getattr(step, getattr(Q, phase).column_name) for step in steps) for phase in PHASES
        }

    def amend(self, findings: list[Finding], tips: dict[str, str]) -> list[Finding]:
        """A compute-bound finding names the top operations; a launch-bound one is added when it holds."""
        named = self.top_operations()
        amended = [
            dataclasses.replace(f, text=f"{f.text} Top operations: {named}.")
            if f.kind == "compute_bound" and named
            else f
            for f in findings
        ]
        if self.launch_bound:
            text = (
                f"launch-bound: the GPU was busy {self.gpu_busy:.0%} of the operator window, with "
                f"{self.launches_per_step:.0f} kernel launches per step of {self.mean_kernel_us:.1f} us on "
                f"average. "
                f"Try {tips.get('launch_bound', 'CUDA graphs or a larger batch')}."
            )
            amended.append(Finding("launch_bound", text))
        return amended

    def top_operations(self) -> str:
        """``backward: 61% in `aten::convolution_backward`; forward: ...`` for the two largest phases."""
        phases = sorted((p for p in (Q.forward.name, Q.backward.name, Q.optimizer.name) if self.top(p, 1)),
                        key=lambda p: self.phase_s.get(p, 0.0), reverse=True)[:2]  # fmt: skip
        return "; ".join(
            f"{p}: {self.top(p, 1)[0].share:.0%} in `{self.top(p, 1)[0].operation}`" for p in phases
        )

    def table(self, n: int = 3) -> tuple[str, list[str], list[list[str]]]:
        """(title, headers, rows): each phase's time (and EpochTimer's), then its top ``n`` operations."""
        clock = "device" if self.device_times else "host"
        rows = []
        for phase in PHASES:
            seconds = self.phase_s.get(phase, 0.0)
            if seconds <= 0:
                continue
            timer = f" (EpochTimer: {self.timer_s[phase]:.3f} s)" if self.timer_s else ""
            rows.append([phase, f"whole phase{timer}", "", f"{seconds:.3f}", "100%"])
            for row in self.top(phase, n):
                seconds = row.device_s if self.device_times else row.host_s
                rows.append(["", _short(row.operation), str(row.calls), f"{seconds:.3f}", f"{row.share:.0%}"])
        title = f"Top operations per phase (OpWindow, {self.recorded_steps} steps, self time on the {clock})"
        return title, ["phase", "operation", "calls", "self (s)", "share"], rows

    def markdown(self) -> str:
        title, headers, rows = self.table()
        lines = [f"**{title}**", "", f"| {' | '.join(headers)} |", "|" + " --- |" * len(headers)]
        lines += [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows]
        if self.gpu_busy is not None:
            lines += ["", f"GPU busy {self.gpu_busy:.0%} of the window; {self.launches_per_step:.0f} "
                      f"launches per step; kernels {self.mean_kernel_us:.1f} us on average."]  # fmt: skip
        return "\n".join(lines)

    def write_csv(self, path: str) -> None:
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(OPS_FIELDS)
            for r in self.rows:
                writer.writerow(
                    [r.phase, r.operation, r.calls, f"{r.host_s:.9f}", f"{r.device_s:.9f}", f"{r.share:.6f}"]
                )
            file.flush()
            os.fsync(file.fileno())


def _short(name: str, width: int = 36) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def is_launch_bound(busy: float | None, mean_kernel_us: float | None) -> bool:
    if busy is None or mean_kernel_us is None:
        return False
    return busy < LAUNCH_BOUND_BUSY and mean_kernel_us < SMALL_KERNEL_US


def busy_share(intervals: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """The share of ``[start, end]`` covered by at least one of ``intervals`` (a kernel running)."""
    if end <= start:
        return 0.0
    covered, reach = 0.0, start
    for begin, finish in sorted(intervals):
        begin, finish = max(begin, reach), min(finish, end)
        if finish > begin:
            covered += finish - begin
            reach = finish
    return covered / (end - start)


def device_figures(
    kernels: Sequence[tuple[float, float]], launches: int, steps: int, start: float, end: float
) -> tuple[float, float, float]:
    """(GPU busy share of the window, launches per step, mean kernel duration in us) from kernel intervals
    (us on the profiler's clock) and the count of launch calls on the host."""
    mean_us = sum(finish - begin for begin, finish in kernels) / len(kernels) if kernels else 0.0
    return busy_share(kernels, start, end), (launches or len(kernels)) / max(steps, 1), mean_us


def summarize(events: Iterable[Any], first_recorded: int = 0, device_times: bool = False) -> OpSummary:
    """An :class:`OpSummary` from a stopped profiler's ``events()`` (``torch.autograd.profiler_util``)."""
    ranges: list[tuple[float, float, str]] = []
    phase_s = dict.fromkeys(PHASES, 0.0)
    operations, kernels, steps, launches = [], [], 0, 0
    for event in events:
        name = event.name
        if getattr(event.device_type, "name", "CPU") != "CPU":
            if "memcpy" not in name.lower() and "memset" not in name.lower():
                kernels.append((event.time_range.start, event.time_range.end))
        elif name.startswith(RANGE_PREFIX):
            phase = name[len(RANGE_PREFIX) :]
            phase_s[phase] = phase_s.get(phase, 0.0) + event.cpu_time_total * _US
            ranges.append((event.time_range.start, event.time_range.end, phase))
        elif name.startswith(STEP_EVENT):
            steps += 1
        else:
            launches += name in LAUNCHES
            operations.append(event)
    ranges.sort()
    starts = [start for start, _, _ in ranges]
    table: dict[tuple[str, str], OpRow] = {}
    for event in operations:
        phase = _phase_of(event, ranges, starts)
        if phase is None:
            continue
        row = table.setdefault((phase, event.name), OpRow(phase, event.name))
        row.calls += 1
        row.host_s += event.self_cpu_time_total * _US
        row.device_s += event.self_device_time_total * _US if device_times else 0.0
    rows = _with_outside(table, phase_s, device_times)
    summary = OpSummary(rows, phase_s, steps, first_recorded, device_times)
    if device_times and ranges:
        start, end = ranges[0][0], max(finish for _, finish, _ in ranges)
        summary.gpu_busy, summary.launches_per_step, summary.mean_kernel_us = device_figures(
            kernels, launches, steps, start, end
        )
    return summary


def _phase_of(event: Any, ranges: list[tuple[float, float, str]], starts: list[float]) -> str | None:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(RANGE_PREFIX):
            return parent.name[len(RANGE_PREFIX) :]
        parent = parent.cpu_parent
    # Another thread (the autograd engine's, on CUDA): the range it ran in. One that spans ranges (a wrapper
    # such as Optimizer.step#SGD.step, around Lightning's closure) belongs to no phase: its children do.
    index = bisect.bisect_right(starts, event.time_range.start) - 1
    if index >= 0 and event.time_range.end <= ranges[index][1]:
        return ranges[index][2]
    return None


def _with_outside(
    table: dict[tuple[str, str], OpRow], phase_s: dict[str, float], device: bool
) -> list[OpRow]:
    """The rows by phase (largest first), each phase's time in no operation last; shares filled in."""
    rows = []
    for phase in phase_s:
        ops = sorted((r for (p, _), r in table.items() if p == phase), key=lambda r: r.host_s, reverse=True)
        outside = max(0.0, phase_s[phase] - sum(r.host_s for r in ops))
        if not ops and outside <= 0:
            continue
        ops.append(OpRow(phase, OUTSIDE, 0, outside, 0.0))
        whole = sum(r.device_s for r in ops) if device else phase_s[phase]
        for row in ops:
            row.share = (row.device_s if device else row.host_s) / whole if whole > 0 else 0.0
        rows += ops
    return rows
