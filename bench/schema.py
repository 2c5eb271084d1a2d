"""The records mixerbench writes, typed: one dataclass per part, one codec, one version, one reader.

Every line of ``results.jsonl`` is a :class:`Record`; every line of ``peers.jsonl`` a
:class:`PeerRecord`. Each part a measurement returns (:class:`Counts`, :class:`Timing`,
:class:`Profile`, :class:`Memory`, :class:`Cost`, :class:`Energy`, :class:`CompileTime`,
the run's :class:`Env`, :class:`Machine` and :class:`Shard`) is a dataclass here, and all
of them are written and read by the one codec below, derived from the dataclasses'
fields and annotations: a new field is one line in its class.

- :func:`encode` turns a dataclass into JSON values (strict JSON: no NaN or infinity).
- :func:`decode` builds a dataclass from JSON values and checks every value against its
  annotation (a bool is not a number, a string is not a number, no non-finite float, no
  integer of 2**63 or more, no unknown field in a part) and against the field's metadata
  (``choices``, ``min``); a class may add a ``check()`` for rules across fields.
- :func:`read_jsonl` (:func:`read_results`, :func:`read_peers`) is the one reader: every
  line is parsed with bounds (line length, nesting depth, integer digits), upgraded from
  the version it was written with (:data:`UPGRADES`) and decoded; a line that fails is a
  :class:`Problem` (file, line, why), never an exception.

Versions (``schema`` in every line): 1 is every file written before this module (the
rounds, the profile and the attention kernel were untyped extra keys; ``compile`` a
bool); 2 is this module's layout. A line without ``schema`` is version 1. A reader
upgrades every older line on reading; :func:`upgrade` is the only place that knows an
old layout. Unknown top-level keys of a record are kept in ``Record.extra`` and written
back unchanged (a tool may annotate lines); unknown keys inside a part are an error.

:func:`describe` lists the fields of every type (name, JSON type, doc) for the reference
documentation. This module imports nothing but the standard library (no torch).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from bench import files

SCHEMA_VERSION = 2
RESULTS_FILENAME = "results.jsonl"
PEERS_FILENAME = "peers.jsonl"

MODES = ("infer", "train")
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
STATUSES = ("ok", "oom", "error", "killed")
# Final outcomes: ``--resume`` skips a case whose newest record has one of these and
# measures every other case again ("error", "killed": a crash or a kill without evidence of OOM).
FINAL_STATUSES = ("ok", "oom")
SHARD_SOURCES = ("cli", "slurm", "kubernetes")
# FLOPs of a step per multiply-add of the forward pass: a multiply-add is 2 FLOPs, and a
# training step (forward + backward for activations + backward for weights) costs about
# 3 forward passes (Kaplan et al. 2020, "Scaling Laws", section 2.1).
FLOPS_PER_MAC = {"infer": 2, "train": 6}

# Bounds of what a reader accepts before any value reaches the code.
MAX_INT = 2**63  # |an integer| must be below this (a 5000-digit integer is refused, not converted)
MAX_INT_DIGITS = 20
MAX_DEPTH = 16  # nesting of objects and arrays in one line
MAX_LINE_BYTES = 16 * 2**20

JSON = Any  # a JSON value: None, bool, int, float, str, list of JSON, dict of str to JSON
Scalar = str | int | float | bool | None


def doc(text: str, **more: Any) -> dict[str, Any]:
    """Field metadata: ``doc`` (one line for the reference), plus ``choices`` (allowed values), ``min`` (lowest
    number), ``required`` (must be in a stored object although the class has a default), ``stored`` (False: not
    written) or ``optional`` (not written while it holds its default; absent: the default)."""
    return {"doc": text, **more}


# ---------------------------------------------------------------------------------------------
# The case: what to measure


@dataclass(frozen=True)
class Case:
    """One measurement: a model (with config overrides) at one size, batch, device, dtype, mode and compile mode.

    :attr:`key` is the identity ``--resume``, ``compare`` and ``merge`` match on. It is the
    key version 1 wrote for every case that version could hold (``threads`` left out when
    unset, ``compile`` "none"/"default" written as false/true), so folders recorded before
    version 2 keep matching.
    """

    model: str = field(metadata=doc("model name (``mixerbench list``)"))
    img_size: int = field(metadata=doc("input resolution in pixels (square)", min=1))
    patch_size: int | None = field(default=None, metadata=doc("patch size; null for convnets", min=1))
    batch: int | Literal["max"] = field(
        default=1,
        metadata=doc('images per step; "max": the largest batch that fits was searched (CUDA)', min=1, required=True),
    )
    device: str = field(default="cpu", metadata=doc('"cpu" or "cuda" (or "cuda:N")', required=True))
    dtype: str = field(default="float32", metadata=doc("compute dtype", choices=DTYPES, required=True))
    mode: str = field(
        default="infer",
        metadata=doc('"infer" (forward, no grad) or "train" (one optimizer step)', choices=MODES, required=True),
    )
    overrides: dict[str, Scalar] = field(default_factory=dict, metadata=doc("model config overrides (name -> value)"))
    channels_last: bool = field(default=False, metadata=doc("input and weights in channels-last memory format"))
    compile: str = field(default="none", metadata=doc('torch.compile mode; "none": eager', choices=COMPILE_MODES))
    label: str = field(default="", metadata=doc("name in reports (stored beside the case, not in it)", stored=False))
    threads: int | None = field(default=None, metadata=doc("torch intra-op threads; null: torch's default", min=1))

    @property
    def key(self) -> str:
        """The canonical key: the stored case as JSON with sorted keys, in version 1's encoding (class doc)."""
        data = encode(self)
        if data["threads"] is None:
            data.pop("threads")
        if self.compile in ("none", "default"):
            data["compile"] = self.compile == "default"
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def series_key(self) -> str:
        """The identity of the series this case belongs to: everything but the image size, and the label."""
        return dataclasses.replace(self, img_size=0).key + "|" + self.name

    @property
    def name(self) -> str:
        return self.label or self.model

    @property
    def attention(self) -> str | None:
        """The ViT attention backend named in the overrides (``attn_backend``); None: the model's default."""
        value = self.overrides.get("attn_backend")
        return value if isinstance(value, str) else None

    def replace(self, **changes: Any) -> Case:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# What measuring returns


@dataclass(frozen=True)
class Counts:
    """The static count of one case's forward pass (batch 1, eval mode): parameters and multiply-adds (MACs)."""

    model: str = field(metadata=doc("model name"))
    img_size: int = field(metadata=doc("input resolution in pixels"))
    patch_size: int | None = field(metadata=doc("patch size; null for convnets"))
    tokens: int | None = field(
        metadata=doc("S, the tokens the model mixes (ViT: with its class token); null for convnets")
    )
    params: int = field(metadata=doc("parameters", min=0))
    macs: int = field(
        metadata=doc(
            "multiply-adds of one image's forward pass (fvcore convention: norms and attention counted)", min=0
        )
    )
    activations: int = field(
        metadata=doc("fvcore's activation count: output elements of matmuls and convolutions", min=0)
    )
    uncounted: dict[str, int] = field(metadata=doc("operator -> how many times it ran without a counting rule"))
    matmul_macs: int = field(metadata=doc("the matmul/conv/attention part of macs (what FlopCounterMode sees)", min=0))
    device: str = field(default="meta", metadata=doc('where the forward ran: "meta" (no arithmetic) or "cpu"'))

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


@dataclass(frozen=True)
class Timing:
    """Per-step time of a batch of ``batch`` images, over every timed block (and per round when timed in rounds)."""

    median_s: float = field(
        metadata=doc("median per-step time (timed in rounds: median over rounds of each round's median)")
    )
    iqr_s: float = field(metadata=doc("interquartile range of the per-step times of all blocks", min=0))
    mean_s: float = field(metadata=doc("mean per-step time of all blocks"))
    runs: int = field(metadata=doc("timed blocks", min=0))
    number_per_run: int = field(metadata=doc("steps per timed block", min=1))
    batch: int = field(metadata=doc("images per step", min=1))
    warmup: int = field(metadata=doc("untimed steps before timing", min=0))
    times_s: tuple[float, ...] = field(default=(), metadata=doc("per-step time of every timed block"))
    rounds_s: tuple[tuple[float, ...], ...] = field(
        default=(),
        metadata=doc("per-step time of each block, one list per round of the series; empty: not timed in rounds"),
    )

    @property
    def images_per_s(self) -> float:
        return self.batch / self.median_s

    @property
    def relative_iqr(self) -> float:
        return self.iqr_s / self.median_s

    def check(self) -> None:
        for name in ("median_s", "mean_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} is not positive")
        for i, t in enumerate(self.times_s):
            if not t > 0:
                raise ValueError(f"times_s[{i}] is not positive")
        for r, block in enumerate(self.rounds_s):
            for i, t in enumerate(block):
                if not t > 0:
                    raise ValueError(f"rounds_s[{r}][{i}] is not positive")


# The operator classes a profile attributes time to (bench.measure.opclass uses these names).
OPERATOR_CLASSES = ("attention", "token_mixing", "dense", "norm_elementwise", "data_movement")
ATTENTION = OPERATOR_CLASSES[0]  # the class whose work grows with S^2


@dataclass(frozen=True)
class Profile:
    """Time per operator class of the profiled steps (one per round), the attention kernel that ran, and class work.

    The classes are those of ``bench.measure.opclass`` (attention, token_mixing, dense,
    norm_elementwise, data_movement). Times are the operators' self times in seconds.
    """

    steps: int = field(metadata=doc("profiled steps (one per round)", min=1))
    cpu_s: dict[str, float] = field(metadata=doc("class -> median over the profiled steps of the CPU self time"))
    cpu_s_rounds: dict[str, tuple[float, ...]] = field(metadata=doc("class -> CPU self time of each profiled step"))
    attention_kernel: str | None = field(
        default=None,
        metadata=doc('attention kernel that ran: "flash", "efficient", "cudnn", "math", "explicit"; null: none'),
    )
    device_s: dict[str, float] = field(
        default_factory=dict, metadata=doc("class -> median device time (CUDA; empty on the CPU)")
    )
    device_s_rounds: dict[str, tuple[float, ...]] = field(
        default_factory=dict, metadata=doc("class -> device time of each profiled step (CUDA; empty on the CPU)")
    )
    tensor_peak_bytes_rounds: tuple[int | None, ...] = field(
        default=(),
        metadata=doc("peak rise of live tensor bytes in each profiled step; null where the profiler has none"),
    )
    work: dict[str, int] | None = field(
        default=None, metadata=doc("class -> work of one batch-1 forward pass (MACs or elements), counted on meta")
    )
    unattributed: str | None = field(
        default=None,
        metadata=doc(
            "why the step's time cannot be split into operator classes (a compiled step: fused kernels carry no "
            "operator name); null when it can"
        ),
    )

    def class_share(self, operator_class: str) -> float:
        """``operator_class``'s part of the profiled CPU time (median per class); NaN when none was recorded."""
        total = sum(self.cpu_s.values())
        return self.cpu_s.get(operator_class, 0.0) / total if total > 0 else float("nan")

    def check(self) -> None:
        if not self.cpu_s:
            raise ValueError("cpu_s names no class")
        lacking = [c for c in OPERATOR_CLASSES if c not in self.cpu_s]
        if lacking:
            raise ValueError(f"cpu_s lacks the operator class{'es' * (len(lacking) > 1)} {', '.join(lacking)}")
        for name, medians, rounds in (
            ("cpu_s", self.cpu_s, self.cpu_s_rounds),
            ("device_s", self.device_s, self.device_s_rounds),
        ):
            if set(rounds) != set(medians):
                raise ValueError(f"{name}_rounds names other classes than {name}")
            if any(len(v) != self.steps for v in rounds.values()):
                raise ValueError(f"{name}_rounds does not hold one value per profiled step")
            if any(t < 0 for t in list(medians.values()) + [t for v in rounds.values() for t in v]):
                raise ValueError(f"{name} holds a negative time")
        if self.device_s and set(self.device_s) != set(self.cpu_s):
            raise ValueError("device_s names other classes than cpu_s")
        clock = self.device_s_rounds if self.device_s else self.cpu_s_rounds
        if any(sum(v[i] for v in clock.values()) <= 0 for i in range(self.steps)):
            raise ValueError(
                f"{'device_s' if self.device_s else 'cpu_s'} records no operator time in a profiled step "
                "(a profiler that saw no kernel): nothing to attribute"
            )
        if self.tensor_peak_bytes_rounds and len(self.tensor_peak_bytes_rounds) != self.steps:
            raise ValueError("tensor_peak_bytes_rounds does not hold one value per profiled step")
        if any(p is not None and p < 0 for p in self.tensor_peak_bytes_rounds):
            raise ValueError("tensor_peak_bytes_rounds holds a negative value")
        if self.work is not None and any(w < 0 for w in self.work.values()):
            raise ValueError("work holds a negative value")

    @property
    def clock(self) -> str:
        """ "device" when device times were recorded (CUDA), else "cpu"."""
        return "device" if self.device_s else "cpu"

    @property
    def class_s(self) -> dict[str, float]:
        """Median seconds per class on :attr:`clock`."""
        return self.device_s if self.device_s else self.cpu_s

    @property
    def class_s_rounds(self) -> dict[str, tuple[float, ...]]:
        """Seconds per class of each profiled step on :attr:`clock`."""
        return self.device_s_rounds if self.device_s else self.cpu_s_rounds


@dataclass(frozen=True)
class Memory:
    """Peak memory of one step (``bench.measure.memory`` says what each method includes)."""

    method: str = field(metadata=doc('"cuda_max_memory_allocated" or "cpu_peak_rss"'))
    weights_bytes: int = field(metadata=doc("bytes of the model's weights", min=0))
    peak_bytes: int = field(metadata=doc("peak bytes during the step", min=0))
    activation_bytes: int = field(metadata=doc("peak bytes above weights and baseline", min=0))
    baseline_bytes: int = field(
        metadata=doc("bytes before the model was built (CPU: the worker's RSS; CUDA: allocated)", min=0)
    )


@dataclass(frozen=True)
class MemoryRequest:
    """One line the sweep sends the CPU memory worker (``bench.measure.memory.MemoryWorker``): the case to measure."""

    case: Case = field(metadata=doc("the case to measure"))


WORKER_STATUSES = ("ok", "oom", "error")


@dataclass(frozen=True)
class MemoryReply:
    """One line the CPU memory worker answers: the memory it measured, or why it could not."""

    status: str = field(metadata=doc('"ok", "oom" (the allocator failed) or "error"', choices=WORKER_STATUSES))
    record: Memory | None = field(default=None, metadata=doc('the measurement ("ok" only)'))
    error: str | None = field(default=None, metadata=doc("why not, one line (other statuses)"))

    def check(self) -> None:
        if (self.status == "ok") != (self.record is not None):
            raise ValueError(f"status {self.status!r} {'without' if self.status == 'ok' else 'with'} a record")
        if self.status != "ok" and self.error is None:
            raise ValueError(f"status {self.status!r} without an error")


@dataclass(frozen=True)
class ClassCost:
    """The deterministic cost of one operator class in one step."""

    bytes_moved: int = field(metadata=doc("bytes read plus written", min=0))
    ops: int = field(metadata=doc("operator calls that do work", min=0))
    flops: int = field(metadata=doc("arithmetic (FLOPs)", min=0))


# One distinct operator call: (class, operator, FLOPs, bytes moved, calls).
Kernel = tuple[str, str, int, int, int]
# One distinct operator call with what pricing it on a device needs (in memory only, never stored):
# (class, operator, dtype, FLOPs, bytes moved, calls, gemm, crossed). ``gemm`` is (batch, M, N, K) for the
# operators that run as matrix products (mm, addmm, bmm, baddbmm; a convolution as its implicit GEMM,
# batch = groups; fused attention as (batch x heads, S_q, S_kv, head dim)), () for every other operator;
# ``crossed``: an operator that is not a matrix product reads or writes tensors laid out in different
# dimension orders (a transposed operand: one side is read or written out of order).
ShapedKernel = tuple[str, str, str, int, int, int, tuple[int, ...], bool]


@dataclass(frozen=True)
class Cost:
    """The deterministic cost of one step beyond MACs (``bench.measure.cost``), counted on the meta device.

    ``bytes_moved`` is a lower bound on memory traffic without fusion;
    ``peak_activation_bytes`` the peak of bytes held by tensors allocated during the step
    (weights, input, gradients and optimizer state excluded); ``peak_step_bytes`` the same
    with gradients and optimizer state; ``kernels`` enough to price the step on any roofline.
    """

    model: str = field(metadata=doc("model name"))
    img_size: int = field(metadata=doc("input resolution in pixels"))
    patch_size: int | None = field(metadata=doc("patch size; null for convnets"))
    tokens: int | None = field(metadata=doc("S; null for convnets"))
    batch: int = field(metadata=doc("images per step", min=1))
    dtype: str = field(metadata=doc("compute dtype"))
    mode: str = field(metadata=doc('"infer" or "train"', choices=MODES))
    device: str = field(metadata=doc("the device whose kernels and autocast policy were modelled"))
    attention: str | None = field(metadata=doc("ViT attention backend; null for other models"))
    bytes_moved: int = field(metadata=doc("bytes read plus written by every operator that does work", min=0))
    peak_activation_bytes: int = field(metadata=doc("peak bytes of tensors allocated during the step", min=0))
    ops: int = field(metadata=doc("operator calls that do work", min=0))
    flops: int = field(metadata=doc("FLOPs of every operator (matmuls 2 per MAC, backward included)", min=0))
    peak_step_bytes: int = field(metadata=doc("peak_activation_bytes with gradients and optimizer state", min=0))
    by_class: dict[str, ClassCost] = field(metadata=doc("operator class -> its cost"))
    gradient_bytes: int | None = field(default=None, metadata=doc("bytes of gradients (train only)", min=0))
    optimizer_bytes: int | None = field(default=None, metadata=doc("bytes of optimizer state (train only)", min=0))
    kernels: tuple[Kernel, ...] = field(
        default=(), metadata=doc("distinct operator calls: [class, operator, FLOPs, bytes moved, calls]")
    )
    # In memory only (not stored, not compared: a cost read back equals the one written):
    shaped: tuple[ShapedKernel, ...] = field(
        default=(),
        compare=False,
        metadata=doc("the kernels with dtype and GEMM shape, for bench.analysis.predict", stored=False),
    )
    weight_bytes: int | None = field(
        default=None,
        compare=False,
        metadata=doc("bytes of parameters and buffers as the step holds them", stored=False),
    )
    input_bytes: int | None = field(default=None, compare=False, metadata=doc("bytes of the input batch", stored=False))


@dataclass(frozen=True)
class Energy:
    """Energy of the timed steps, from NVML's total-energy counter (NVIDIA GPUs, Volta and newer)."""

    joules_per_image: float | None = field(metadata=doc("energy per image in joules; null when unavailable", min=0))
    mean_watts: float | None = field(metadata=doc("mean power over the window in watts; null when unavailable", min=0))
    window_s: float = field(metadata=doc("length of the measured window in seconds", min=0))
    steps: int = field(metadata=doc("steps run in the window", min=0))
    unavailable: str | None = field(default=None, metadata=doc("why the energy is null (no NVML, no counter, ...)"))


@dataclass(frozen=True)
class CompileTime:
    """What torch.compile cost before steady state, apart from the step time."""

    mode: str = field(metadata=doc("torch.compile mode", choices=COMPILE_MODES))
    first_call_s: float = field(metadata=doc("seconds of the first call (tracing and compiling)", min=0))
    warmup_s: float = field(metadata=doc("seconds of the warm-up steps until steady", min=0))
    warmup_steps: int = field(metadata=doc("warm-up steps until steady", min=0))


# ---------------------------------------------------------------------------------------------
# Where it was measured


@dataclass(frozen=True)
class Env:
    """The software and device a record was measured with (``bench.measure.env``)."""

    torch: str | None = field(default=None, metadata=doc("torch version"))
    timm: str | None = field(default=None, metadata=doc("timm version"))
    python: str | None = field(default=None, metadata=doc("Python version"))
    device: str | None = field(default=None, metadata=doc("device the case ran on"))
    device_name: str | None = field(default=None, metadata=doc("the device's name (GPU name, or the CPU model)"))
    cpu_model: str | None = field(default=None, metadata=doc("CPU model name"))
    cpu_count: int | None = field(default=None, metadata=doc("logical CPUs", min=0))
    torch_threads: int | None = field(default=None, metadata=doc("torch intra-op threads", min=0))
    cuda: str | None = field(default=None, metadata=doc("CUDA version torch was built with (CUDA runs)"))
    git_commit: str | None = field(default=None, metadata=doc("harness commit (+dirty with local changes)"))
    date: str | None = field(default=None, metadata=doc("when it was measured (UTC, ISO 8601)"))


@dataclass(frozen=True)
class GpuSample:
    """What changes during a run on a GPU (NVML); every unreadable field null."""

    sm_clock_mhz: float | None = field(default=None, metadata=doc("SM clock, MHz"))
    mem_clock_mhz: float | None = field(default=None, metadata=doc("memory clock, MHz"))
    temperature_c: float | None = field(default=None, metadata=doc("temperature, degrees C"))
    power_w: float | None = field(default=None, metadata=doc("power draw, W"))
    throttle_reasons: int | None = field(default=None, metadata=doc("NVML clock throttle reason bit mask"))
    throttle_reason_names: tuple[str, ...] | None = field(default=None, metadata=doc("names of the mask's bits"))
    clocks_locked: bool | None = field(default=None, metadata=doc("application clocks locked"))
    other_processes: int | None = field(default=None, metadata=doc("other compute processes on the GPU"))


@dataclass(frozen=True)
class GpuInfo:
    """The GPU a run measured on, as NVML reports it; every unreadable field null."""

    index: int | None = field(default=None, metadata=doc("NVML index of the GPU"))
    name: str | None = field(default=None, metadata=doc("GPU name"))
    uuid: str | None = field(default=None, metadata=doc("GPU UUID"))
    mig_mode: bool | None = field(default=None, metadata=doc("MIG enabled"))
    driver: str | None = field(default=None, metadata=doc("driver version"))
    cuda_version: str | None = field(default=None, metadata=doc("CUDA version of the driver"))
    power_limit_w: float | None = field(default=None, metadata=doc("enforced power limit, W"))
    sm_clock_mhz: float | None = field(default=None, metadata=doc("SM clock, MHz"))
    mem_clock_mhz: float | None = field(default=None, metadata=doc("memory clock, MHz"))
    max_sm_clock_mhz: float | None = field(default=None, metadata=doc("maximum SM clock, MHz"))
    max_mem_clock_mhz: float | None = field(default=None, metadata=doc("maximum memory clock, MHz"))
    clocks_locked: bool | None = field(default=None, metadata=doc("application clocks locked"))
    persistence_mode: bool | None = field(default=None, metadata=doc("persistence mode on"))
    temperature_c: float | None = field(default=None, metadata=doc("temperature, degrees C"))
    other_processes: int | None = field(default=None, metadata=doc("other compute processes on the GPU"))


@dataclass(frozen=True)
class Fingerprint:
    """The machine a run measures on (``bench.measure.fingerprint.fingerprint``); unreadable fields null."""

    machine_id: str | None = field(default=None, metadata=doc("hash of host, CPU and GPU UUID"))
    host_sha: str | None = field(default=None, metadata=doc("hash of the host name"))
    cpu_model: str | None = field(default=None, metadata=doc("CPU model name"))
    cpu_count: int | None = field(default=None, metadata=doc("logical CPUs"))
    cpu_affinity: int | None = field(default=None, metadata=doc("CPUs this process may run on"))
    cgroup_cpu_max: float | None = field(default=None, metadata=doc("cgroup CPU limit in CPUs"))
    cgroup_memory_max_bytes: int | None = field(default=None, metadata=doc("cgroup memory limit in bytes"))
    cpu_governor: str | None = field(default=None, metadata=doc("cpufreq governor"))
    gpu: GpuInfo | None = field(default=None, metadata=doc("the GPU (CUDA runs)"))


@dataclass(frozen=True)
class Machine(Fingerprint):
    """The machine's fingerprint at the start of the run, as every record of the run carries it; unreadable fields
    null."""

    gpu_start: GpuSample | None = field(default=None, metadata=doc("GPU sample at the start of the run (CUDA runs)"))

    @property
    def fingerprint(self) -> Fingerprint:
        """The fingerprint without the start sample (what ``machine.json`` stores per run)."""
        return Fingerprint(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Fingerprint)})


MACHINE_FILENAME = "machine.json"
MACHINE_FILE_VERSION = 1


@dataclass(frozen=True)
class MachineRun:
    """One run of a sweep on one device, in ``machine.json``: the fingerprint, GPU samples before and after, and
    what makes its timings doubtful."""

    device: str = field(metadata=doc('the device ("cpu", "cuda", "cuda:N")'))
    machine_id: str | None = field(metadata=doc("the fingerprint's machine id"))
    shard: Shard | None = field(metadata=doc("the shard this run was, when sharded"))
    started: str | None = field(metadata=doc("when the run started (UTC, ISO 8601)"))
    finished: str | None = field(metadata=doc("when it finished (UTC, ISO 8601)"))
    gpu_start: GpuSample | None = field(metadata=doc("GPU sample at the start (CUDA runs)"))
    gpu_end: GpuSample | None = field(metadata=doc("GPU sample at the end (CUDA runs)"))
    warnings: tuple[str, ...] = field(metadata=doc("clocks not locked, a shared GPU, throttling: one line each"))
    fingerprint: Fingerprint = field(metadata=doc("the machine"))


@dataclass(frozen=True)
class MachineFile:
    """``machine.json`` of a sweep folder: every run that wrote into the folder, one entry per run and device."""

    schema: int = field(metadata=doc(f"version of this file's layout ({MACHINE_FILE_VERSION})", min=1))
    runs: tuple[MachineRun, ...] = field(metadata=doc("the runs, oldest first"))


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``, and where that came from."""

    index: int = field(metadata=doc("0-based shard index", min=0))
    count: int = field(metadata=doc("number of shards", min=1))
    source: str = field(metadata=doc('"cli", "slurm" or "kubernetes"', choices=SHARD_SOURCES))

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"shard {name} must be an integer, got {value!r}")
        if self.source not in SHARD_SOURCES:
            raise ValueError(f"shard source must be one of {', '.join(SHARD_SOURCES)}, got {self.source!r}")
        what = f"shard {self.index}/{self.count}"
        if self.count < 1:
            raise ValueError(f"{what}: the shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"{what}: the shard index must be in 0..{self.count - 1} (0-based), got {self.index}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


# ---------------------------------------------------------------------------------------------
# The lines of results.jsonl and peers.jsonl


@dataclass
class Record:
    """One line of ``results.jsonl``: a measured case, what was asked (``case``) and every part that came back.

    ``status`` is "ok" (every part measured), "oom" (out of memory, with evidence),
    "killed" (the CPU memory worker died from a signal without such evidence) or "error".
    Counting and timing may have succeeded on a case that failed later, so ``counts`` and
    ``time`` can be present on any status; ``counts``, ``time`` and ``memory`` are present
    on every "ok" record.
    """

    case: Case = field(metadata=doc("what was measured"))
    status: str = field(metadata=doc('"ok", "oom", "error" or "killed"', choices=STATUSES))
    label: str = field(default="", metadata=doc("name in reports"))
    family: str | None = field(default=None, metadata=doc('model family: "mixer", "vit", "resnet", ...'))
    env: Env | None = field(default=None, metadata=doc("software and device"))
    roof_flops_per_s: float | None = field(
        default=None, metadata=doc("matmul roof measured at the start of the run, FLOP/s", min=0)
    )
    flops_per_mac: int | None = field(
        default=None, metadata=doc("FLOPs per forward MAC: 2 (infer) or 6 (train)", min=0)
    )
    counts: Counts | None = field(default=None, metadata=doc("parameters and MACs"))
    batch: int | None = field(
        default=None, metadata=doc('the batch that ran (the searched one for batch "max")', min=1)
    )
    time: Timing | None = field(default=None, metadata=doc("step time"))
    achieved_flops_per_s: float | None = field(
        default=None, metadata=doc("FLOP/s achieved (flops_per_mac x MACs x images/s)", min=0)
    )
    mfu: float | None = field(default=None, metadata=doc("achieved / roof", min=0))
    memory: Memory | None = field(default=None, metadata=doc("peak memory of one step"))
    error: str | None = field(default=None, metadata=doc("the failure, one line (status other than ok)"))
    elapsed_s: float | None = field(default=None, metadata=doc("seconds the case took, all parts", min=0))
    shard: Shard | None = field(default=None, metadata=doc("the shard that ran it, when sharded"))
    machine: Machine | None = field(default=None, metadata=doc("the machine's fingerprint"))
    cost: Cost | None = field(default=None, metadata=doc("bytes moved, peak activation bytes, operators"))
    copy_bytes_per_s: float | None = field(
        default=None, metadata=doc("copy bandwidth measured at the start of the run (the memory roof)", min=0)
    )
    profile: Profile | None = field(default=None, metadata=doc("time per operator class (profiled sweeps)"))
    energy: Energy | None = field(default=None, metadata=doc("energy per image (NVIDIA GPUs)"))
    compile_time: CompileTime | None = field(default=None, metadata=doc("compile time (compiled cases)"))
    extra: dict[str, JSON] = field(
        default_factory=dict,
        metadata=doc("top-level keys this version does not know, written back unchanged", stored=False),
    )

    def check(self) -> None:
        if self.status == "ok":
            lacking = [n for n in ("counts", "time", "memory") if getattr(self, n) is None]
            if lacking:
                raise ValueError(f"an 'ok' record without {', '.join(lacking)}")
        if not self.label:
            self.label = self.case.model
        self.case = self.case.replace(label=self.label)

    @property
    def tokens(self) -> int | None:
        return self.counts.tokens if self.counts else None

    @property
    def macs(self) -> int | None:
        return self.counts.macs if self.counts else None

    @property
    def params(self) -> int | None:
        return self.counts.params if self.counts else None

    @property
    def key(self) -> str:
        return self.case.key

    @property
    def name(self) -> str:
        return self.label or self.case.model

    @property
    def series_key(self) -> str:
        return self.case.replace(label=self.name).series_key

    @property
    def machine_key(self) -> str:
        """The machine it ran on (:func:`machine_key`): the fingerprint's id, else a hash of the env."""
        return machine_key(self.machine.machine_id if self.machine else None, self.env)

    def to_json(self) -> dict[str, JSON]:
        """The JSON object of one line (``extra`` merged in at the top)."""
        out: dict[str, JSON] = dict(self.extra)
        out.update(encode(self))
        out["label"] = self.name
        out["schema"] = SCHEMA_VERSION
        return out

    @classmethod
    def from_json(cls, data: JSON) -> Record:
        """Upgrade, decode and check one line's object; ValueError says what is wrong."""
        return decode_line(cls, data)


@dataclass(frozen=True)
class PeerCase:
    """What a peers line compared: our model against timm's, same weights, same batch."""

    ours: str = field(metadata=doc("our model name"))
    timm: str = field(metadata=doc("timm model name"))
    img_size: int = field(metadata=doc("input resolution in pixels", min=1))
    batch: int = field(metadata=doc("images per step", min=1))
    device: str = field(metadata=doc("device"))
    dtype: str = field(metadata=doc("compute dtype", choices=DTYPES))
    mode: str = field(metadata=doc('"infer" or "train"', choices=MODES))
    channels_last: bool = field(metadata=doc("channels-last memory format"))

    @property
    def key(self) -> str:
        return json.dumps(encode(self), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class PairedTiming:
    """Latency ratio a/b of two steps timed in alternation (one run, interleaved; ``bench.measure.timing``)."""

    median_a_s: float = field(metadata=doc("median step time of ours, s"))
    median_b_s: float = field(metadata=doc("median step time of timm's, s"))
    ratio_median: float = field(metadata=doc("median over rounds of (ours / timm)"))
    ratio_q1: float = field(metadata=doc("first quartile of the per-round ratios"))
    ratio_q3: float = field(metadata=doc("third quartile of the per-round ratios"))
    rounds: int = field(metadata=doc("rounds", min=1))
    number: int = field(metadata=doc("steps per timing of one model in one round", min=1))

    def check(self) -> None:
        for name in ("median_a_s", "median_b_s", "ratio_median", "ratio_q1", "ratio_q3"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} is not positive")


@dataclass
class PeerRecord:
    """One line of ``peers.jsonl``: ours and timm's model timed interleaved."""

    case: PeerCase = field(metadata=doc("the pair and how it ran"))
    paired: PairedTiming = field(metadata=doc("the interleaved timing"))
    env: Env | None = field(default=None, metadata=doc("software and device"))
    status: str = field(default="ok", metadata=doc('"ok"', choices=STATUSES))
    extra: dict[str, JSON] = field(
        default_factory=dict,
        metadata=doc("top-level keys this version does not know, written back unchanged", stored=False),
    )

    @property
    def key(self) -> str:
        return self.case.key

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = dict(self.extra)
        out.update(encode(self))
        out["schema"] = SCHEMA_VERSION
        return out

    @classmethod
    def from_json(cls, data: JSON) -> PeerRecord:
        return decode_line(cls, data)


# ---------------------------------------------------------------------------------------------
# fits.json: the verdicts of a report

FITS_FILENAME = "fits.json"
VERDICTS = ("linear", "quadratic", "inconclusive")
FIT_QUANTITIES = ("macs", "latency", "activation_memory")
FIT_AXES = ("resolution", "patch_size", "pixels")
# A number of fits.json that is not finite is written as null, so every number there may be null.
Interval = tuple[float | None, float | None]


@dataclass(frozen=True)
class FitCurve:
    """The curve quantity(x) = a*x + b*x^2 + c fitted to one series (``bench.analysis.scaling.ScalingFit``)."""

    a: float | None = field(metadata=doc("linear coefficient, quantity per unit of x"))
    b: float | None = field(metadata=doc("quadratic coefficient, quantity per unit of x squared"))
    c: float | None = field(metadata=doc("constant, in the quantity's unit"))
    b_ci: Interval | None = field(metadata=doc("95% interval of b (measured fits of 4 or more sizes); else null"))
    quadratic_share: float | None = field(metadata=doc("b x_max^2 / the fitted value at x_max"))
    share_ci: Interval | None = field(metadata=doc("95% interval of quadratic_share (measured fits); else null"))
    verdict: str = field(metadata=doc("the curve's own verdict", choices=VERDICTS))
    n_sizes: int = field(metadata=doc("distinct x fitted", min=1))
    crossover: float | None = field(
        metadata=doc("a/b in units of x, where the quadratic term overtakes the linear one; null when a or b <= 0")
    )
    max_rel_residual: float | None = field(metadata=doc("largest |value - fit| / |value| over the points", min=0))
    note: str = field(metadata=doc("why the verdict is inconclusive, when it is"))


@dataclass(frozen=True)
class FitAttribution:
    """The per-operator attribution that decides profiled latency (``bench.analysis.attribution``)."""

    verdict: str = field(metadata=doc("verdict of the attribution", choices=VERDICTS))
    quadratic_share: float | None = field(
        metadata=doc("fraction of the step spent on quadratic work at x_max (median over rounds)")
    )
    share_ci: Interval | None = field(metadata=doc("95% interval over rounds; null with one round"))
    quadratic_classes: dict[str, float | None] = field(
        metadata=doc("operator class -> quadratic fraction of its work at x_max (classes with any)")
    )
    drift: float | None = field(metadata=doc("time per unit of x, largest size over smallest, minus 1"))
    class_drift: dict[str, float | None] = field(
        metadata=doc("operator class -> time per unit of its own work, largest size over smallest, minus 1")
    )
    clock: str = field(
        metadata=doc('"cpu" or "device": the clock the class times come from', choices=("cpu", "device"))
    )


@dataclass(frozen=True, kw_only=True)
class FitRecord:
    """One object of ``fits.json``: the verdict on one quantity of one series, what decided it, and where it ran.

    ``fits.json`` (written by ``mixerbench report`` and ``sweep``) is a JSON array of these, strict JSON: a
    number that is not finite is written as null (:func:`dumps_fits`, :func:`read_fits`).
    """

    model: str = field(metadata=doc("model name"))
    label: str = field(metadata=doc("the series' name in reports"))
    family: str | None = field(metadata=doc('model family: "mixer", "vit", "resnet", ...'))
    attention: str | None = field(metadata=doc("ViT attention backend asked for; null: the model's default or none"))
    attention_kernel: str | None = field(
        metadata=doc("attention kernel(s) that ran, from the profiles, comma-separated; null: none recorded")
    )
    quantity: str = field(metadata=doc("what was fitted", choices=FIT_QUANTITIES))
    verdict: str = field(metadata=doc("the verdict", choices=VERDICTS))
    quadratic_share: float | None = field(
        metadata=doc(
            "what the verdict was decided on: the time share of quadratic work at the largest size (attributed "
            "latency), else the curve's quadratic share"
        )
    )
    share_ci: Interval | None = field(metadata=doc("95% interval of quadratic_share; null for exact fits"))
    note: str = field(metadata=doc("why, with the drift"))
    axis: str = field(
        metadata=doc(
            '"resolution" (x = tokens, patch fixed), "patch_size" (x = tokens, resolution fixed) or "pixels" '
            "(convnets, x = H x W)",
            choices=FIT_AXES,
        )
    )
    x: tuple[int, ...] = field(metadata=doc("x of every record fitted (tokens S, or pixels)"))
    patch_size: int | None = field(metadata=doc("patch size of the series; null for convnets"))
    batch: int | Literal["max"] = field(metadata=doc('images per step, or "max"', min=1))
    device: str = field(metadata=doc("device"))
    dtype: str = field(metadata=doc("compute dtype"))
    mode: str = field(metadata=doc('"infer" or "train"', choices=MODES))
    machine: str | None = field(
        default=None, metadata=doc("id of the machine it ran on (fingerprint, else env hash); files before: absent")
    )
    machine_name: str | None = field(
        default=None, metadata=doc("the machine's name in the report when the folder holds several, else null")
    )
    threads: int | None = field(default=None, metadata=doc("torch intra-op threads it ran with; null: unknown"))
    per_image: bool = field(metadata=doc('true for batch "max": the quantity is per image'))
    curve: FitCurve = field(metadata=doc("the fitted curve"))
    drift: float | None = field(
        metadata=doc("change of the quantity per unit of x over the range (measured quantities); null for exact fits")
    )
    decided_by: str = field(
        metadata=doc(
            '"exact count", "exact fit (identical repetitions)", "curve (sizes as units)" or "per-operator attribution"'
        )
    )
    measured_as: str | None = field(
        default="",
        metadata=doc(
            'measured fits only (absent for exact ones): "profiled peak tensor bytes" when activation memory was '
            "fitted on the profiler's peaks, else null",
            optional=True,
        ),
    )
    attribution: FitAttribution | None = field(
        default=None, metadata=doc("attributed latency only (absent otherwise): the attribution", optional=True)
    )


def dumps_fits(fits: list[FitRecord]) -> str:
    """The text of ``fits.json``: a JSON array of ``fits``, strict (a number that is not finite is null)."""
    return json.dumps([encode(f, nonfinite_null=True) for f in fits], indent=1, allow_nan=False) + "\n"


def read_fits(path: str | os.PathLike[str]) -> list[FitRecord]:
    """Every object of a ``fits.json``, decoded and checked; ValueError (one line) names what is wrong."""
    with files.open_file(Path(path), "rb") as f:
        raw = f.read(MAX_LINE_BYTES + 1)  # parse_line refuses more than the bound
    data = parse_line(raw.replace(b"\n", b" "))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array, got {_short(data)}")
    try:
        return [decode_object(FitRecord, obj, f"[{i}]") for i, obj in enumerate(data)]
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# The codec

T = TypeVar("T")
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_STORED: dict[type, tuple[dataclasses.Field[Any], ...]] = {}


def _stored(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    if cls not in _STORED:
        _STORED[cls] = tuple(f for f in dataclasses.fields(cls) if f.metadata.get("stored", True))
    return _STORED[cls]


def encode(value: Any, *, nonfinite_null: bool = False) -> JSON:
    """JSON values of a dataclass (stored fields), tuple, list, dict or scalar.

    A float that is not finite is a ValueError, or null with ``nonfinite_null``. A field marked ``optional`` is
    left out while it holds its default.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: encode(getattr(value, f.name), nonfinite_null=nonfinite_null)
            for f in _stored(type(value))
            if not (f.metadata.get("optional") and getattr(value, f.name) == f.default)
        }
    if isinstance(value, (list, tuple)):
        return [encode(v, nonfinite_null=nonfinite_null) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v, nonfinite_null=nonfinite_null) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        if nonfinite_null:
            return None
        raise ValueError(f"{value} is not JSON")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} is not a record value")


def dumps(record: Record | PeerRecord) -> str:
    """One line of strict JSON (sorted keys, no NaN), without the newline."""
    return json.dumps(record.to_json(), sort_keys=True, allow_nan=False)


def _kind(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: JSON) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else _kind(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(where: str, expected: str, value: JSON) -> ValueError:
    return ValueError(f"{where or 'line'}: expected {expected}, got {_short(value)}")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


@functools.cache
def _shape(tp: Any) -> tuple[Any, tuple[Any, ...], bool]:
    """(origin, arguments, whether a union) of an annotation: looked up once per annotation, not per value."""
    return typing.get_origin(tp), typing.get_args(tp), _is_union(tp)


def _is_int(v: Any) -> bool:
    return type(v) is int and -MAX_INT < v < MAX_INT


def _is_float(v: Any) -> bool:
    return (type(v) is float and math.isfinite(v)) or _is_int(v)


_SCALAR_CHECKS: dict[Any, Callable[[Any], bool]] = {
    str: lambda v: type(v) is str,
    bool: lambda v: type(v) is bool,
    int: _is_int,
    float: _is_float,
}


@functools.cache
def _plain(tp: Any) -> Callable[[Any], bool] | None:
    """For a scalar annotation (str, bool, int, float, a union of them and None): a test that a JSON value is
    valid for it as it stands, which :func:`decode` would return unchanged; None for any other annotation.

    The common case is then checked without a call of :func:`decode` per value (numbers, names, timing samples);
    a value that fails the test goes through :func:`decode`, which raises with the field's name.
    """
    if tp in _SCALAR_CHECKS:
        return _SCALAR_CHECKS[tp]
    _, args, union = _shape(tp)
    if not union:
        return None
    checks = [_plain(a) for a in args if a is not type(None)]
    if not all(checks):
        return None
    none_ok = type(None) in args
    return lambda v: (v is None and none_ok) or any(check(v) for check in checks)  # type: ignore[misc]


def decode(tp: Any, value: JSON, where: str = "") -> Any:
    """``value`` (JSON) as the annotation ``tp`` says; ValueError naming the field (``where``) otherwise."""
    origin, args, union = _shape(tp)
    if tp is Any:
        _check_json(value, where, 0)
        return value
    if tp is type(None):
        if value is not None:
            raise _fail(where, "null", value)
        return None
    if union:
        if value is None:
            if type(None) in args:
                return None
            raise _fail(where, json_type(tp), value)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode(arg, value, where)
            except ValueError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise _fail(where, json_type(tp), value)
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise _fail(where, json_type(tp), value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(where, "a boolean", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, "an integer", value)
        if abs(value) >= MAX_INT:
            raise ValueError(f"{where}: integer out of range (|x| >= 2**63)")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, "a number", value)
        if isinstance(value, int) and abs(value) >= MAX_INT:
            raise ValueError(f"{where}: number out of range")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: not a finite number")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _fail(where, "a string", value)
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        _, vt = args
        plain = _plain(vt)
        if plain is not None and all(map(plain, value.values())):  # JSON keys are strings
            return dict(value)
        return {k: decode(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise _fail(where, "an array", value)
        (vt,) = args
        plain = _plain(vt)
        if plain is not None and all(map(plain, value)):  # timing samples, names: checked in one pass
            return list(value)
        return [decode(vt, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list):
            raise _fail(where, "an array", value)
        if len(args) == 2 and args[1] is Ellipsis:
            plain = _plain(args[0])
            if plain is not None and all(map(plain, value)):
                return tuple(value)
            return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(where, f"an array of {len(args)}", value)
        checks = [_plain(a) for a in args]
        if all(check is not None and check(v) for check, v in zip(checks, value)):  # e.g. a cost's kernels
            return tuple(value)
        return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return decode_object(tp, value, where)
    raise TypeError(f"{where}: no codec for {tp!r}")


@functools.cache
def _plan(cls: type) -> dict[str, tuple[Any, Callable[[Any], bool] | None, bool, Any, Any]]:
    """Stored field name -> (annotation, :func:`_plain` test, required, choices, minimum): what
    :func:`decode_object` checks, read once per class."""
    hints = _hints(cls)
    plan = {}
    for f in _stored(cls):
        required = f.metadata.get("required", False) or (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        plan[f.name] = (
            hints[f.name],
            _plain(hints[f.name]),
            required,
            f.metadata.get("choices"),
            f.metadata.get("min"),
        )
    return plan


def decode_object(cls: type[T], data: JSON, where: str = "") -> T:
    """A ``cls`` from a JSON object: every stored field decoded and checked, no unknown key, then ``check()``."""
    name = where or cls.__name__
    if not isinstance(data, dict):
        raise _fail(name, "an object", data)
    assert dataclasses.is_dataclass(cls)
    plan = _plan(cls)
    unknown = data.keys() - plan.keys()
    if unknown:
        shown = ", ".join(repr(k)[:40] for k in sorted(unknown)[:5])
        raise ValueError(f"{name}: unknown field(s) {shown}")
    values: dict[str, Any] = {}
    for field_name, (hint, plain, required, choices, low) in plan.items():
        if field_name not in data:
            if required:
                raise ValueError(f"{name}: lacks {field_name}")
            continue
        value = data[field_name]
        if plain is None or not plain(value):
            value = decode(hint, value, f"{where}.{field_name}" if where else field_name)
        if choices is not None and value is not None and value not in choices:
            at = f"{where}.{field_name}" if where else field_name
            raise ValueError(f"{at}: {_short(value)} is not one of {', '.join(choices)}")
        if low is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
            at = f"{where}.{field_name}" if where else field_name
            raise ValueError(f"{at}: {value!r} is below {low}")
        values[field_name] = value
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}" if where else str(exc)) from None
    return obj


def _check_json(value: JSON, where: str, depth: int) -> None:
    """A free-form JSON value (``extra``): bounded depth, bounded integers, finite numbers."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        for v in value.values():
            _check_json(v, where, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, where, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INT:
        raise ValueError(f"{where}: integer out of range")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: not a finite number")


def json_type(tp: Any) -> str:
    """The JSON type of an annotation, in words, for messages and the reference."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any JSON"
    if tp is type(None):
        return "null"
    if _is_union(tp):
        return " | ".join(json_type(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(tp))
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer"
    if tp is float:
        return "number"
    if tp is str:
        return "string"
    if origin is dict:
        return f"object of {json_type(typing.get_args(tp)[1])}"
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return "[" + ", ".join(json_type(a) for a in args) + "]"
        inner = json_type(args[0])
        return f"array of ({inner})" if "|" in inner else f"array of {inner}"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp.__name__
    return str(tp)


# ---------------------------------------------------------------------------------------------
# Predictions: devices (a data file shipped in bench/data/devices.json, or a user's own) and predicted steps

DEVICE_FILE_VERSION = 1
PEAK_DTYPES = ("float32", "tf32", "float16", "bfloat16")  # float32: CUDA cores; the rest tensor cores, fp32 accumulate
DEVICE_NUMBERS = ("flops", "bandwidth", "sms", "boost_clock_hz", "l2_bytes", "memory_bytes")


@dataclass(frozen=True)
class DeviceClass:
    """The calibrated constants of the step-time model for one class of devices (``bench.analysis.predict``)."""

    matmul_efficiency: float = field(metadata=doc("fraction of the peak a full wave of matmul tiles reaches", min=0))
    conv_efficiency: float = field(
        metadata=doc("fraction of the peak a full wave of convolution tiles (implicit GEMM) reaches", min=0)
    )
    attention_efficiency: float = field(metadata=doc("fraction of the peak fused attention reaches", min=0))
    bandwidth_efficiency: float = field(
        metadata=doc("fraction of the nominal bandwidth memory-bound operators reach", min=0)
    )
    launch_s: float = field(metadata=doc("the least time one kernel takes (launch and dispatch), seconds", min=0))
    tile_overhead_k: float = field(
        default=0.0,
        metadata=doc("a GEMM tile's fixed cost (loading, epilogue) in steps of its inner dimension K", min=0),
    )
    crossed_bandwidth_efficiency: float = field(
        default=1.0,
        metadata=doc("bandwidth_efficiency of a memory-bound operator with a transposed operand", min=0),
    )
    note: str = field(default="", metadata=doc("where the constants come from (the command that fitted them)"))

    def check(self) -> None:
        for name in (
            "matmul_efficiency",
            "conv_efficiency",
            "attention_efficiency",
            "bandwidth_efficiency",
            "crossed_bandwidth_efficiency",
        ):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not in (0, 1]")


@dataclass(frozen=True)
class Device:
    """One device the model can price a step on: its peak numbers, each with its source."""

    name: str = field(metadata=doc("the product name"))
    device_class: str = field(metadata=doc("the class whose calibrated constants apply (DeviceFile.classes)"))
    flops: dict[str, float] = field(
        metadata=doc(
            "dense peak FLOP/s per dtype: float32 (CUDA cores), tf32, float16 and bfloat16 (tensor cores, float32 "
            "accumulate, as autocast runs them)"
        )
    )
    bandwidth: float = field(metadata=doc("memory bandwidth, bytes/s", min=1))
    sms: int = field(metadata=doc("streaming multiprocessors (CPU: cores)", min=1))
    boost_clock_hz: float = field(metadata=doc("boost clock, Hz", min=0))
    l2_bytes: int = field(metadata=doc("last-level cache, bytes", min=0))
    memory_bytes: int = field(metadata=doc("device memory, bytes", min=1))
    sources: dict[str, str] = field(metadata=doc(f"where each number comes from: {', '.join(DEVICE_NUMBERS)}"))

    def check(self) -> None:
        lacking = [d for d in PEAK_DTYPES if d not in self.flops]
        if lacking or set(self.flops) - set(PEAK_DTYPES):
            raise ValueError(f"flops: needs exactly {', '.join(PEAK_DTYPES)}")
        if any(v <= 0 for v in self.flops.values()):
            raise ValueError("flops: every peak must be above 0")
        unsourced = [n for n in DEVICE_NUMBERS if not self.sources.get(n, "").strip()]
        if unsourced:
            raise ValueError(f"sources: no source for {', '.join(unsourced)}")


@dataclass(frozen=True)
class DeviceFile:
    """A device table (``bench/data/devices.json``, or a user's file given with ``mixerbench predict --devices``)."""

    format: int = field(metadata=doc(f"version of this file's layout ({DEVICE_FILE_VERSION})", min=1))
    devices: dict[str, Device] = field(metadata=doc("device name (as --gpu takes it) -> device"))
    classes: dict[str, DeviceClass] = field(
        default_factory=dict, metadata=doc("device class -> its calibrated constants")
    )
    validation: str = field(default="", metadata=doc("the model's validated error, as the calibration wrote it"))

    def check(self) -> None:
        if self.format != DEVICE_FILE_VERSION:
            raise ValueError(f"format {self.format}: this mixerbench reads format {DEVICE_FILE_VERSION}")


@dataclass(frozen=True)
class StepPrediction:
    """One predicted step (``mixerbench predict --json``): a prediction from the counted cost, never a measurement."""

    gpu: str = field(metadata=doc("the device it was predicted for"))
    step_ms: float = field(metadata=doc("predicted step time, milliseconds", min=0))
    images_per_s: float = field(metadata=doc("predicted throughput: batch / step time", min=0))
    peak_bytes: int = field(metadata=doc("predicted peak memory: weights + input + counted peak activations", min=0))
    fits_in_memory: bool = field(metadata=doc("peak_bytes plus the runtime's reserve within the device's memory"))
    class_share: dict[str, float] = field(
        metadata=doc("operator class -> its share of the predicted step time (sums to 1)")
    )
    case: Case | None = field(default=None, metadata=doc("what was predicted (null for a bare cost)"))
    predicted: bool = field(default=True, metadata=doc("always true: a prediction, not a measurement"))
    error: str = field(default="", metadata=doc("the model's validated error (leave-one-device-out)"))

    @property
    def step_s(self) -> float:
        return self.step_ms / 1e3


PREDICT_JSON = "predict.json"  # the objects `mixerbench predict --json` prints, one a line
DEVICES_FILENAME = "devices.json"

# The types of each file mixerbench writes, in the order the reference lists them.
FILES: dict[str, tuple[type, ...]] = {
    RESULTS_FILENAME: (
        Record,
        Case,
        Counts,
        Timing,
        Profile,
        Memory,
        Cost,
        ClassCost,
        Energy,
        CompileTime,
        Env,
        Machine,
        GpuInfo,
        GpuSample,
        Shard,
    ),
    PEERS_FILENAME: (PeerRecord, PeerCase, PairedTiming),
    FITS_FILENAME: (FitRecord, FitCurve, FitAttribution),
    MACHINE_FILENAME: (MachineFile, MachineRun, Fingerprint),
    DEVICES_FILENAME: (DeviceFile, Device, DeviceClass),
    PREDICT_JSON: (StepPrediction,),
}
TYPES: tuple[type, ...] = tuple(cls for types_ in FILES.values() for cls in types_)


def describe(file: str | None = None) -> dict[str, list[tuple[str, str, str]]]:
    """Per type (by name, in :data:`FILES` order; only ``file``'s types when given): (field name, JSON type, doc)
    of every stored field. A field that may be absent has "(may be absent)" after its type."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for cls in FILES[file] if file is not None else TYPES:
        hints = _hints(cls)
        rows = [
            (
                f.name,
                json_type(hints[f.name]) + (" (may be absent)" if f.metadata.get("optional") else ""),
                str(f.metadata.get("doc", "")),
            )
            for f in _stored(cls)
        ]
        if cls in (Record, PeerRecord):
            rows.insert(0, ("schema", "integer", f"schema version ({SCHEMA_VERSION})"))
        out[cls.__name__] = rows
    return out


# ---------------------------------------------------------------------------------------------
# Versions


def _v1_to_v2_record(data: dict[str, JSON]) -> dict[str, JSON]:
    """Version 1 (every file before this module) to 2.

    - ``case.compile``: false -> "none", true -> "default";
    - ``flops`` (the counts) -> ``counts``; lines older than ``flops`` get counts from the
      top-level ``tokens``, ``params`` and ``macs`` (the rest zero); those three keys, a
      copy of the counts, go;
    - ``time.images_per_s`` (derived) goes; the top-level ``rounds`` become ``time.rounds_s``;
    - the top-level ``profile`` becomes a typed part; ``attention_kernel``, a copy of
      ``profile.attention_kernel``, goes.
    """
    out = dict(data)
    case = out.get("case")
    if isinstance(case, dict):
        case = dict(case)
        if isinstance(case.get("compile"), bool):
            case["compile"] = "default" if case["compile"] else "none"
        out["case"] = case
    counts = out.pop("flops", None)
    tokens, params, macs = out.pop("tokens", None), out.pop("params", None), out.pop("macs", None)
    if counts is None and isinstance(macs, int) and isinstance(case, dict):
        counts = {
            "model": case.get("model"),
            "img_size": case.get("img_size"),
            "patch_size": case.get("patch_size"),
            "tokens": tokens,
            "params": params if params is not None else 0,
            "macs": macs,
            "activations": 0,
            "uncounted": {},
            "matmul_macs": 0,
        }
    if counts is not None:
        out["counts"] = counts
    rounds = out.pop("rounds", None)
    time = out.get("time")
    if isinstance(time, dict):
        time = {k: v for k, v in time.items() if k != "images_per_s"}
        if rounds:
            time["rounds_s"] = rounds
        out["time"] = time
    kernel = out.pop("attention_kernel", None)
    profile = out.get("profile")
    if isinstance(profile, dict) and "attention_kernel" not in profile:
        out["profile"] = dict(profile, attention_kernel=kernel)
    out["schema"] = 2
    return out


def _v1_to_v2_peer(data: dict[str, JSON]) -> dict[str, JSON]:
    """Version 1 to 2: the layout is unchanged (the case and the paired timing become typed)."""
    return dict(data, schema=2)


# kind -> version -> the function that lifts a line of that version to the next one.
UPGRADES: dict[type, dict[int, Callable[[dict[str, JSON]], dict[str, JSON]]]] = {
    Record: {1: _v1_to_v2_record},
    PeerRecord: {1: _v1_to_v2_peer},
}


def version_of(data: dict[str, JSON]) -> int:
    """The schema version a line was written with (no ``schema`` key: 1); ValueError when unknown."""
    version = data.get("schema", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and SCHEMA_VERSION < version < MAX_INT:
            raise ValueError(f"schema {version}: written by a newer mixerbench (this one reads up to {SCHEMA_VERSION})")
        raise ValueError(f"unknown schema {_short(version)}")
    return version


def upgrade(cls: type, data: dict[str, JSON]) -> dict[str, JSON]:
    """A line of any known version lifted, one version at a time, to :data:`SCHEMA_VERSION`."""
    version = version_of(data)
    while version < SCHEMA_VERSION:
        data = UPGRADES[cls][version](data)
        version += 1
    return data


R = TypeVar("R", Record, PeerRecord)


def decode_line(cls: type[R], data: JSON) -> R:
    """A line's JSON object as ``cls``: upgraded, unknown top-level keys kept in ``extra``, every part checked."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if cls is Record and ("case" not in data or "status" not in data):
        raise ValueError("not a result record (needs a 'case' object and a 'status')")
    if cls is PeerRecord and ("case" not in data or "paired" not in data):
        raise ValueError("not a peers record (needs 'case' and 'paired' objects)")
    data = upgrade(cls, data)
    names = {f.name for f in _stored(cls)}
    extra = {k: v for k, v in data.items() if k not in names and k != "schema"}
    _check_json(extra, "extra", 1)
    record = decode_object(cls, {k: v for k, v in data.items() if k in names})
    record.extra = extra
    return record


# ---------------------------------------------------------------------------------------------
# The one reader


@dataclass(frozen=True)
class Problem:
    """A line of a results file that is not a valid record: where and why (never an exception)."""

    path: str
    line: int  # 1-based; 0: the file itself
    message: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.message}"


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits")
    return int(text)


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?')  # a JSON string (to the end of the line when unterminated)
_BRACKETS = re.compile(r"[^\[\]{}]+")  # everything but brackets and braces


def parse_line(raw: bytes, limit: int | None = None) -> JSON:
    """One line's JSON value with bounds (length: ``limit``, default MAX_LINE_BYTES; integer digits, no
    NaN/Infinity, nesting); ValueError otherwise."""
    limit = MAX_LINE_BYTES if limit is None else limit
    if len(raw) > limit:
        raise ValueError(f"a line of more than {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    check_nesting(text)
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def check_nesting(text: str, limit: int = MAX_DEPTH) -> None:
    """ValueError when the JSON ``text`` nests arrays and objects deeper than ``limit`` (checked before parsing).

    Strings are cut out first (an unterminated one runs to the end of the text), then only brackets and
    braces are counted: one pass of two regular expressions, not a Python step per character.
    """
    level = 0
    for ch in _BRACKETS.sub("", _STRINGS.sub("", text)):  # nesting is checked before json recurses into it
        level += 1 if ch in "[{" else -1
        if level > limit:
            raise ValueError(f"nested deeper than {limit}")


def _interned(value: JSON) -> JSON:
    """``value`` with every string (keys included) interned: the names that every record repeats (classes,
    operators, fields of free-form dicts) are then held once, not once per record."""
    if isinstance(value, dict):
        return {sys.intern(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    if isinstance(value, str):
        return sys.intern(value)
    return value


def iter_jsonl(path: str | os.PathLike[str], cls: type[R]) -> Iterator[R | Problem]:
    """Every line of ``path`` in file order, read one at a time: a ``cls`` when valid, else a :class:`Problem`.

    Empty lines are skipped. Opening ``path`` is the only step that raises: FileNotFoundError,
    or :class:`bench.files.UnsafeFile` (a ValueError with one line) for a symbolic link, FIFO or
    device, which are never opened. The file is not held in memory: a caller that keeps only
    what it needs of each record reads a sweep of any size.
    """
    path = Path(path)
    with files.open_file(path, "rb") as f:  # a regular file only: no symlink, FIFO or device
        # a line over the bound is never read whole
        for number, raw in enumerate(files.bounded_lines(f, MAX_LINE_BYTES), start=1):
            raw = raw.strip()
            if not raw:
                continue
            try:
                yield decode_line(cls, _interned(parse_line(raw)))
            except ValueError as exc:
                yield Problem(str(path), number, str(exc))


def read_jsonl(path: str | os.PathLike[str], cls: type[R]) -> tuple[list[R], list[Problem]]:
    """Every valid line of ``path`` as ``cls``, in file order, and a :class:`Problem` per other line
    (:func:`iter_jsonl`, collected)."""
    records: list[R] = []
    problems: list[Problem] = []
    for item in iter_jsonl(path, cls):
        if isinstance(item, Problem):
            problems.append(item)
        else:
            records.append(item)
    return records, problems


def read_results(path: str | os.PathLike[str]) -> tuple[list[Record], list[Problem]]:
    """The valid :class:`Record` lines of a ``results.jsonl``, and a :class:`Problem` per other line."""
    return read_jsonl(path, Record)


def read_peers(path: str | os.PathLike[str]) -> tuple[list[PeerRecord], list[Problem]]:
    """The valid :class:`PeerRecord` lines of a ``peers.jsonl``, and a :class:`Problem` per other line."""
    return read_jsonl(path, PeerRecord)


def case_key(case: JSON) -> str:
    """The key of a case (:attr:`Case.key`, or :attr:`PeerCase.key` for a peers case) as stored in a line of any
    version; ValueError when it is neither."""
    if isinstance(case, dict) and "ours" in case:
        return decode_object(PeerCase, case, "case").key
    if isinstance(case, dict) and isinstance(case.get("compile"), bool):  # version 1
        case = _v1_to_v2_record({"case": case})["case"]
    return decode_object(Case, case, "case").key


# What identifies the machine of a record written before fingerprints existed (its env).
ENV_MACHINE_FIELDS = ("device", "device_name", "cpu_model", "cpu_count")


def machine_key(machine_id: str | None, env: Env | None) -> str:
    """The id of the machine a record ran on: its fingerprint's ``machine_id`` when stored, else "env-" + a hash
    of the env's device, device name, CPU model and CPU count (records older than fingerprints)."""
    if machine_id:
        return machine_id
    import hashlib

    parts = {name: getattr(env, name) if env is not None else None for name in ENV_MACHINE_FIELDS}
    return "env-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def latest_by_key(records: list[Record]) -> dict[str, Record]:
    """The last record of each case (a resumed or repeated case keeps its newest result)."""
    return {r.key: r for r in records}
