"""Latency and throughput of one inference or training step, with ``torch.utils.benchmark``.

A *step* is one call of the callable that :func:`make_step` returns:

- ``mode="infer"``: a forward pass under ``torch.inference_mode`` (model in eval mode);
- ``mode="train"``: forward, cross-entropy loss against fixed random labels, backward and
  an SGD optimizer step (model in train mode).

Lower precision runs through ``torch.autocast`` (weights stay float32, as in mixed
precision training); float16 training uses no gradient scaler, which changes nothing for
timing. Convnets run with ``channels_last`` memory format by default. On CUDA the step
synchronises before it returns, so any timer that calls it measures the device's work
(asv's timer does not synchronise by itself).

:func:`measure` times a step with ``torch.utils.benchmark.Timer.blocked_autorange`` after
a warm-up and reports the median and interquartile range of the per-step time.
:func:`matmul_roof` measures the device's matmul throughput in the same dtype, the
denominator of the model FLOPs utilisation (MFU) the sweep records.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

import architectures
from bench.schema import DTYPES as DTYPE_NAMES
from bench.schema import FLOPS_PER_MAC, MODES, Case, CompileTime, Energy, PairedTiming, Timing

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
assert tuple(DTYPES) == DTYPE_NAMES


def _benchmark_module():
    """``torch.utils.benchmark``, imported quietly.

    Its import pulls in ``torch.utils.cpp_extension``, which logs "No CUDA runtime is
    found, using CUDA_HOME=..." on a machine without a GPU: a warning about compiling
    extensions, which this harness never does, on every run's stderr.
    """
    import logging

    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)
    return benchmark


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("no CUDA GPU is visible to torch (device cuda)")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def check_dtype(device: str, dtype: str) -> None:
    """Raise ValueError when ``device`` cannot run ``dtype`` (tries a small autocast matmul)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if dtype == "float32":
        return
    if device == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{torch.cuda.get_device_name(0)} does not support bfloat16")
    try:
        a = torch.ones(8, 8, device=device)
        with torch.autocast(device, dtype=DTYPES[dtype]):
            out = a @ a
    except RuntimeError as exc:
        raise ValueError(f"{device} cannot run {dtype} under autocast: {exc}") from None
    if out.dtype != DTYPES[dtype]:
        raise ValueError(f"autocast on {device} does not run matmuls in {dtype} (got {out.dtype})")


def uses_channels_last(model_name: str) -> bool:
    """Default memory format: channels_last for convnets (reference ResNets and timm models without tokens)."""
    return architectures.traits(model_name).channels_last


def build_model(
    model_name: str,
    img_size: int,
    patch_size: int | None = None,
    *,
    device: str = "cpu",
    overrides: dict | None = None,
    channels_last: bool = False,
) -> nn.Module:
    """Build ``model_name`` for ``img_size`` directly on ``device`` (random weights)."""
    with torch.device(device):
        model = architectures.create(model_name, img_size=img_size, patch_size=patch_size, **(overrides or {}))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def make_step(
    model: nn.Module,
    *,
    batch: int,
    img_size: int,
    device: str,
    dtype: str = "float32",
    mode: str = "infer",
    channels_last: bool = False,
    compile: str = "none",
    num_classes: int = 1000,
) -> Callable[[], None]:
    """One inference or training step of ``model`` on a fixed random batch (see the module doc).

    ``compile``: a :data:`bench.measure.compiling.COMPILE_MODES` mode; the step compiles on its first call.
    """
    from bench.measure import compiling

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = contextlib.nullcontext if dtype == "float32" else lambda: torch.autocast(device, dtype=DTYPES[dtype])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    forward = compiling.compile_model(model, compile)

    if mode == "infer":
        model.eval()

        def infer_step() -> None:
            with torch.inference_mode(), autocast():
                forward(x)
            sync()

        return infer_step

    model.train()
    labels = torch.randint(0, num_classes, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(forward(x).float(), labels)
        loss.backward()
        optimizer.step()
        sync()

    return step


def time_step(
    step: Callable[[], None],
    *,
    batch: int,
    min_run_time: float = 1.0,
    warmup: int = 2,
    min_runs: int = 5,
    label: str = "",
) -> Timing:
    """Warm up, then time ``step`` with ``Timer.blocked_autorange`` on all of torch's threads.

    ``blocked_autorange`` picks the steps per block and runs blocks for ``min_run_time``
    seconds; when that gave fewer than ``min_runs`` blocks (slow steps), more blocks of
    the same size are timed, so the median and IQR always rest on ``min_runs`` samples.
    """
    benchmark = _benchmark_module()
    for _ in range(warmup):
        step()
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads(), label=label)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    times = list(m.times)
    while len(times) < min_runs:
        times += timer.timeit(m.number_per_run).times
    q1, median, q3 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    return Timing(
        median_s=median,
        iqr_s=q3 - q1,
        mean_s=float(np.mean(times)),
        runs=len(times),
        number_per_run=m.number_per_run,
        batch=batch,
        warmup=warmup,
        times_s=tuple(times),
    )


def time_blocks(step: Callable[[], None], number: int, blocks: int = 1) -> list[float]:
    """Seconds per step of ``blocks`` consecutive blocks of ``number`` steps each.

    Like ``torch.utils.benchmark.Timer.timeit`` (garbage collection off while timing; the
    step synchronises CUDA itself, see :func:`make_step`) but without the two extra untimed
    steps ``timeit`` runs before every block: the timing rounds warm each size up once per
    visit themselves, and for a step of a second those hidden steps tripled the cost.
    """
    import gc
    import time

    if number < 1 or blocks < 1:
        raise ValueError(f"number and blocks must be at least 1, got {number} and {blocks}")
    collecting = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(blocks):
            started = time.perf_counter()
            for _ in range(number):
                step()
            times.append((time.perf_counter() - started) / number)
        return times
    finally:
        if collecting:
            gc.enable()


def build_case(case: Case) -> nn.Module:
    """The model of ``case`` on its device, random weights, in its memory format."""
    return build_model(
        case.model,
        case.img_size,
        case.patch_size,
        device=case.device,
        overrides=case.overrides,
        channels_last=case.channels_last,
    )


def _batch(case: Case, searched: int | None = None) -> int:
    """The batch to run: ``searched`` when given, else the case's own, which must then be a number."""
    batch = searched or case.batch
    if not isinstance(batch, int):
        raise ValueError(f"{case.name}: batch {batch!r} is searched before a step is made")
    return batch


def case_step(case: Case, model: nn.Module, *, batch: int | None = None) -> Callable[[], None]:
    """:func:`make_step` for ``case`` (``batch`` when the case's own is "max" and has been searched)."""
    return make_step(
        model,
        batch=_batch(case, batch),
        img_size=case.img_size,
        device=case.device,
        dtype=case.dtype,
        mode=case.mode,
        channels_last=case.channels_last,
        compile=case.compile,
    )


def measure(case: Case, *, min_run_time: float = 1.0, warmup: int = 2, min_runs: int = 5) -> Timing:
    """Time one step of ``case`` (see :func:`make_step` and :func:`time_step`); ``case.batch`` must be a number."""
    return measure_case(case, min_run_time=min_run_time, warmup=warmup, min_runs=min_runs, energy=False).timing


@dataclasses.dataclass(frozen=True)
class Measured:
    """What timing one case returns: the step time, what compiling cost (None: eager), the energy (None: not asked)."""

    timing: Timing
    compile_time: CompileTime | None = None
    energy: Energy | None = None


def measure_case(
    case: Case, *, min_run_time: float = 1.0, warmup: int = 2, min_runs: int = 5, energy: bool = True
) -> Measured:
    """Warm up (compiled: until steady, timed apart), time the step, then (``energy``) measure its energy.

    ``Timing.warmup`` is the number of untimed steps that ran before timing (compiled: the
    first call and the warm-up until steady). Energy is measured on the warm step after
    timing (:func:`bench.measure.energy.measure`; on the CPU it says why there is none).
    """
    from bench.measure import compiling
    from bench.measure import energy as joules

    with torch_threads(case.threads):
        step = case_step(case, build_case(case))
        compiled = compiling.warm_up(step, case.compile, steps=warmup)
        timing = time_step(
            step, batch=_batch(case), min_run_time=min_run_time, warmup=0, min_runs=min_runs, label=case.name
        )
        ran = warmup if compiled is None else 1 + compiled.warmup_steps
        timing = dataclasses.replace(timing, warmup=ran)
        used = joules.measure(step, batch=_batch(case), device=case.device) if energy else None
        return Measured(timing, compiled, used)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run with ``threads`` intra-op threads (None: leave torch's setting), restoring it afterwards."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def matmul_roof(device: str, dtype: str = "float32", *, size: int | None = None, min_run_time: float = 0.5) -> float:
    """The roof MFU divides by, in FLOP/s: the best of the kernels these models run (:func:`roof_kernels`).

    One square matmul alone is not a roof: ResNet-18's 3x3 convolutions ran faster than a
    1024^2 matmul on this CPU (MFU 101-110%). The roof is the fastest of a square matmul,
    a transformer MLP's wide matmul and a 3x3 convolution, each timed the way the models run.
    """
    return max(roof_kernels(device, dtype, size=size, min_run_time=min_run_time).values())


def roof_kernels(
    device: str, dtype: str = "float32", *, size: int | None = None, min_run_time: float = 0.5
) -> dict[str, float]:
    """FLOP/s of each roof kernel, timed on ``device`` in ``dtype`` (``min_run_time`` shared among them).

    ``size`` (default 1024 on CPU, 8192 on CUDA) sets the kernels: a ``size`` x ``size``
    matmul; the MLP matmul of 2*size tokens of width size/2 into 2*size features (Mixer's
    and ViT's shape); a 3x3 convolution, size/16 channels in and out (CUDA: size/32),
    56 x 56 px, channels_last (ResNet's shape). Lower precision runs them the way the
    models run (:func:`make_step`): ``F.linear``/``conv2d`` on float32 inputs under
    ``torch.autocast`` of ``dtype``. A plain float16 ``torch.mm`` on CPU takes a reference
    kernel some 30-50x slower than the oneDNN kernel autocast's linear takes, which once
    gave MFUs above 1000%.
    """
    import functools

    size = size or (8192 if device == "cuda" else 1024)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    autocast = dtype != "float32"
    width = max(size // 2, 1)
    channels = max(size // (32 if device == "cuda" else 16), 8)
    batch = 64 if device == "cuda" else 8
    matmuls = {  # name: (m, k, n), x (m, k) times w (k, n)
        f"matmul {size}x{size}x{size}": (size, size, size),
        f"MLP matmul {2 * size}x{width}x{2 * size}": (2 * size, width, 2 * size),
    }
    kernels: dict[str, tuple[Callable[[], object], int]] = {}
    for name, (m, k, n) in matmuls.items():
        x = torch.randn(m, k, device=device)
        if autocast:  # F.linear multiplies by the weight's transpose, as nn.Linear does
            w = torch.randn(n, k, device=device)
            kernels[name] = (functools.partial(torch.nn.functional.linear, x, w), 2 * m * k * n)
        else:
            w = torch.randn(k, n, device=device)
            kernels[name] = (functools.partial(torch.mm, x, w), 2 * m * k * n)
    x = torch.randn(batch, channels, 56, 56, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, device=device).contiguous(memory_format=torch.channels_last)
    kernels[f"conv 3x3 {channels}ch 56px b{batch}"] = (
        lambda: torch.nn.functional.conv2d(x, w, padding=1),
        2 * batch * channels * channels * 9 * 56 * 56,
    )
    out = {}
    for name, (op, flops) in kernels.items():

        def step(op=op) -> None:
            if autocast:
                with torch.autocast(device, dtype=DTYPES[dtype]):
                    op()
            else:
                op()
            sync()

        timing = time_step(
            step, batch=1, min_run_time=max(min_run_time / len(kernels), 0.05), warmup=2, min_runs=3, label=name
        )
        out[name] = flops / timing.median_s
    return out


def achieved_flops(macs_per_image: int, images_per_s: float, mode: str) -> float:
    """FLOP/s a model reaches: FLOPS_PER_MAC[mode] x MACs per image x images per second."""
    return FLOPS_PER_MAC[mode] * macs_per_image * images_per_s


def paired_ratio(
    step_a: Callable[[], None], step_b: Callable[[], None], *, rounds: int = 7, number: int = 2, warmup: int = 2
) -> PairedTiming:
    """Time ``step_a`` and ``step_b`` in alternation: each round times both (order swapped every round).

    Interleaving makes both see the same machine load, so their ratio is far steadier
    than two separate medians on a shared machine. The spread is the interquartile range
    of the per-round ratios.
    """
    import statistics

    benchmark = _benchmark_module()
    for _ in range(warmup):
        step_a()
        step_b()
    timers = [
        benchmark.Timer(stmt="step()", globals={"step": s}, num_threads=torch.get_num_threads())
        for s in (step_a, step_b)
    ]
    times_a, times_b = [], []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        got = {i: timers[i].timeit(number).median for i in order}
        times_a.append(got[0])
        times_b.append(got[1])
    ratios = [a / b for a, b in zip(times_a, times_b)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if rounds > 1 else (ratios[0],) * 3
    return PairedTiming(
        median_a_s=statistics.median(times_a),
        median_b_s=statistics.median(times_b),
        ratio_median=statistics.median(ratios),
        ratio_q1=q1,
        ratio_q3=q3,
        rounds=rounds,
        number=number,
    )
