"""Every torch and Lightning name the GPU path relies on is still where the code looks for it.

These run on a CPU, so that a torch or Lightning upgrade that moves one of them fails here, by name, and not
half-way through a lent GPU's few minutes. `make test-gpu-image` runs them on the GPU image's versions (torch
2.11.0, lightning 2.6.6); `make test` on the main venv's.
"""

from __future__ import annotations

import inspect
import logging

import pytest
import torch
from torch import nn

from cifarbench.callbacks import compile_watch
from cifarbench.callbacks.compile_watch import compile_counters
from cifarbench.model import COMPILE_MODES, CUDA_GRAPH_MODES


@pytest.mark.parametrize(
    "name",
    [
        "is_available", "get_device_name", "get_device_properties", "current_stream", "synchronize",
        "max_memory_allocated", "reset_peak_memory_stats", "Event",
    ],
)  # fmt: skip
def test_the_cuda_functions_the_clocks_and_the_check_call_exist(name):
    assert callable(getattr(torch.cuda, name)), f"torch.cuda.{name} moved (torch {torch.__version__})"


def test_a_cuda_event_takes_enable_timing_and_has_what_the_event_clock_calls():
    """clocks.CudaEventClock: Event(enable_timing=True), then record(stream), query(), elapsed_time(other)."""
    assert "enable_timing" in inspect.signature(torch.cuda.Event.__new__).parameters
    for method in ("record", "query", "elapsed_time", "synchronize"):
        assert callable(getattr(torch.cuda.Event, method)), f"torch.cuda.Event.{method} moved"


class OwnModule(nn.Module):
    """A layer inside a module of one's own: torch 2.11 builds no graph for a bare nn.Linear (its forward is
    torch's own code, which dynamo skips), while this, like the compiled ResNet-18, gives one."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layer(inputs).relu()


def test_dynamo_counts_each_compiled_graph_where_compile_watch_reads_it():
    from torch._dynamo.utils import counters  # what compile_counters() reads: the import must work

    torch._dynamo.reset()
    module = OwnModule()
    module.compile(backend="eager", dynamic=False)
    before = compile_counters()[0]
    module(torch.randn(4, 8))
    module(torch.randn(4, 8))  # the same shape: no second graph
    assert compile_counters()[0] == before + 1 == int(counters["stats"]["unique_graphs"])
    module(torch.randn(3, 8))  # a new shape: a second graph
    assert compile_counters()[0] == before + 2


def test_inductor_still_counts_cuda_graph_skips_under_the_name_compile_watch_reads():
    """No CUDA here to make a skip happen: the counter's name must be in the code that increments it."""
    import torch._inductor.cudagraph_utils as cudagraph_utils
    import torch._inductor.output_code as output_code

    sources = inspect.getsource(cudagraph_utils) + inspect.getsource(output_code)
    assert 'counters["inductor"]["cudagraph_skips"] += 1' in sources


def test_the_cuda_graph_skip_reasons_come_through_the_logger_compile_watch_listens_to():
    import torch._inductor.cudagraph_utils as cudagraph_utils

    assert cudagraph_utils.cudagraphs_log.name == compile_watch._CUDAGRAPH_LOGGER
    assert logging.getLogger(compile_watch._CUDAGRAPH_LOGGER) is cudagraph_utils.cudagraphs_log


def test_the_compile_modes_offered_exist_and_the_cuda_graph_ones_record_cuda_graphs():
    """model.CUDA_GRAPH_MODES decides whether CompileWatch warns about skipped CUDA graphs."""
    import torch._inductor
    import torch._inductor.config

    assert hasattr(torch._inductor.config.triton, "cudagraphs")  # what those modes switch on
    for mode in COMPILE_MODES:
        options = torch._inductor.list_mode_options(mode)
        assert bool(options.get("triton.cudagraphs")) == (mode in CUDA_GRAPH_MODES), (mode, options)


def test_the_module_compile_and_the_cuda_graph_step_marker_exist():
    """model.py calls ``net.compile(mode=..., dynamic=False)``; the README names cudagraph_mark_step_begin."""
    assert {"args", "kwargs"} <= set(inspect.signature(nn.Module.compile).parameters)
    assert {"mode", "dynamic", "backend"} <= set(inspect.signature(torch.compile).parameters)
    assert callable(torch.compiler.cudagraph_mark_step_begin)
    assert callable(torch._dynamo.reset)


def test_the_tf32_switches_the_peak_depends_on_exist():
    assert isinstance(torch.backends.cudnn.allow_tf32, bool)
    assert torch.get_float32_matmul_precision() in {"highest", "high", "medium"}


def test_lightning_still_offers_the_flop_counter_and_its_peak_table():
    from lightning.fabric.utilities.throughput import get_available_flops, measure_flops

    assert {"model", "forward_fn", "loss_fn"} <= set(inspect.signature(measure_flops).parameters)
    assert list(inspect.signature(get_available_flops).parameters) == ["device", "dtype"]
