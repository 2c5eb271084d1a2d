"""Peak memory of one step on small configurations: process RSS on CPU, allocator peak on CUDA.

``peakmem_`` is asv's own measure: the peak resident set size of the benchmark process,
which includes the interpreter, torch's libraries, the weights built in ``setup`` and the
step's activations. ``Baseline.peakmem_imports`` is the same process with nothing built,
so the difference is what the model and the step add. On CUDA, ``track_cuda_peak_mib`` is
``torch.cuda.max_memory_allocated`` during one step (``bench.measure.memory``): tensors only,
weights included; skipped (n/a) without a GPU.
"""

from __future__ import annotations

from bench.measure import memory
from bench.schema import Case

from .common import MODES, TIMED_BATCH, TIMED_IMG_SIZE, TIMED_MODELS, build_step, require_device

MiB = 2**20


class Baseline:
    """Peak RSS of a benchmark process that imported torch and bench and built nothing."""

    def peakmem_imports(self) -> None:
        pass


class CpuStep:
    """Peak RSS of a process that built the model and ran one step on CPU."""

    params = (TIMED_MODELS, MODES)
    param_names = ("model", "mode")

    def setup(self, model: str, mode: str) -> None:
        self.step = build_step(model, "cpu", mode)

    def peakmem_step(self, model: str, mode: str) -> None:
        self.step()


class CudaStep:
    """``torch.cuda.max_memory_allocated`` during one step (the second; the first warms up)."""

    params = (TIMED_MODELS, MODES)
    param_names = ("model", "mode")

    def setup(self, model: str, mode: str) -> None:
        require_device("cuda")

    def track_cuda_peak_mib(self, model: str, mode: str) -> float:
        record = memory.measure_in_process(Case(model, TIMED_IMG_SIZE, batch=TIMED_BATCH, device="cuda", mode=mode))
        return record.peak_bytes / MiB

    track_cuda_peak_mib.unit = "MiB"
