"""``torch.compile`` modes as an axis of a case, and the compile time apart from the step time.

A case's ``compile`` is one of :data:`COMPILE_MODES`:

- ``none``: eager PyTorch, the model as written;
- ``default``: TorchDynamo captures the forward into graphs, TorchInductor fuses the
  element-wise and normalisation operators around the matmuls into generated kernels
  (Triton on CUDA, C++/OpenMP on the CPU) and calls vendor libraries for the matmuls;
- ``reduce-overhead``: ``default`` plus CUDA graphs, which replay the whole step's kernel
  launches at once (it pays off where launch overhead matters: small batches, small models);
- ``max-autotune``: ``reduce-overhead`` plus benchmarking Triton matmul and convolution
  templates against the libraries' kernels for every shape at compile time (minutes).

Models are compiled with static shapes (``dynamic=False``): every image size is its own
graph, as it is in eager mode, never a dynamic-shape graph made after a second size.
Compiling is lazy: the first call of a step compiles, and some later calls still do
one-off work (CUDA graphs record on the second or third call; autotuning finishes).
:func:`warm_up` therefore times the first call apart, then runs steps until their time
is steady (the last :data:`STEADY_STEPS` within :data:`STEADY_TOL` of their median, at
most :data:`MAX_WARMUP_STEPS` steps or :data:`MAX_WARMUP_S` seconds): that is the
:class:`CompileTime` a record holds beside its step time, which is timed only afterwards.

Counts (parameters, MACs, bytes) are those of the eager model: compiling changes how the
work is scheduled and fused, not the arithmetic the model asks for.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from bench.schema import COMPILE_MODES, CompileTime

# Modes measured on CUDA only, and why (one line each).
CUDA_ONLY = {
    "reduce-overhead": "compile mode reduce-overhead is CUDA graphs; on the CPU torch.compile skips them and "
    "runs 'default' under another name (measure default there)",
    "max-autotune": "compile mode max-autotune benchmarks kernel templates for every shape; on the CPU that takes "
    "many minutes per model and is not what this harness compares (measure it on a GPU)",
}
STEADY_STEPS = 3  # the last this many warm-up steps ...
STEADY_TOL = 0.10  # ... all within this fraction of their median: steady
MAX_WARMUP_STEPS = 50
MAX_WARMUP_S = 60.0
RECOMPILE_LIMIT = 256  # graphs per code object: every size and model of a sweep compiles the same forward methods


def normalise(mode: str | bool | None) -> str:
    """A compile mode from a case: older cases stored a bool (False: "none", True: "default")."""
    if mode is True:
        return "default"
    if mode is False or mode is None:
        return "none"
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    return mode


def check_mode(device: str, mode: str) -> None:
    """Raise ValueError when ``device`` does not run compile ``mode`` (see :data:`CUDA_ONLY`)."""
    mode = normalise(mode)
    if device != "cuda" and mode in CUDA_ONLY:
        raise ValueError(CUDA_ONLY[mode])


def compile_model(model, mode: str | bool):
    """``model`` itself for "none", else ``torch.compile(model, mode=mode, dynamic=False)`` (module doc).

    A sweep compiles the same forward methods for many sizes and models: the recompile
    limit is raised to :data:`RECOMPILE_LIMIT`, and hitting it is an error rather than a
    silent fall-back to eager (which would be timed as compiled).
    """
    mode = normalise(mode)
    if mode == "none":
        return model
    import torch

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if isinstance(getattr(config, name, None), int) and getattr(config, name) < RECOMPILE_LIMIT:
            setattr(config, name, RECOMPILE_LIMIT)
    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):
        if hasattr(config, name):
            setattr(config, name, True)
    return torch.compile(model, mode=mode, dynamic=False)


def steady(times: list[float], n: int = STEADY_STEPS, tol: float = STEADY_TOL) -> bool:
    """Whether the last ``n`` step times are all within ``tol`` of their median."""
    if len(times) < n:
        return False
    last = times[-n:]
    mid = statistics.median(last)
    return all(abs(t - mid) <= tol * mid for t in last)


def warm_up(
    step: Callable[[], None],
    mode: str | bool,
    *,
    steps: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    max_steps: int = MAX_WARMUP_STEPS,
    max_s: float = MAX_WARMUP_S,
) -> CompileTime | None:
    """Run ``step`` until it is ready to be timed; the :class:`CompileTime` of a compiled step, None for eager.

    Eager ("none"): ``steps`` steps, as before compile modes existed. Compiled: the first
    call timed apart, then steps until :func:`steady` (at least ``steps`` of them), at most
    ``max_steps`` steps or ``max_s`` seconds (a step time that never settles is then
    timed as it is; ``warmup_steps`` equal to ``max_steps`` says so).
    """
    mode = normalise(mode)
    if mode == "none":
        for _ in range(steps):
            step()
        return None
    started = clock()
    step()
    first = clock() - started
    times: list[float] = []
    began = clock()
    while True:
        t0 = clock()
        step()
        times.append(clock() - t0)
        if len(times) >= steps and steady(times):
            break
        if len(times) >= max_steps or clock() - began >= max_s:
            break
    return CompileTime(mode=mode, first_call_s=first, warmup_s=sum(times), warmup_steps=len(times))
