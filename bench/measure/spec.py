"""What to measure and what measuring returns: one frozen :class:`Case` flows down, typed parts flow back.

A :class:`Case` is passed whole to counting, timing, memory and the CPU memory worker
(as JSON over a pipe); its :attr:`Case.key` is the identity that ``--resume``,
``mixerbench compare`` and merging match on. :class:`FlopRecord`, :class:`Timing` and
:class:`MemoryRecord` are what counting, timing and memory return; ``bench.runs.records``
holds them together in one ``Record`` per case.

This module imports nothing heavy (no torch), so reading and reporting results stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field

MODES = ("infer", "train")
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
# FLOPs of a step per multiply-add of the forward pass: a multiply-add is 2 FLOPs, and a
# training step (forward + backward for activations + backward for weights) costs about
# 3 forward passes (Kaplan et al. 2020, "Scaling Laws", section 2.1).
FLOPS_PER_MAC = {"infer": 2, "train": 6}


def case_key(case: dict) -> str:
    """The canonical key of a stored case: its JSON with sorted keys (nested dicts too)."""
    return json.dumps(case, sort_keys=True, separators=(",", ":"))


def _fields(cls, data: dict) -> dict:
    """The keys of ``data`` that are fields of dataclass ``cls`` (derived keys such as images_per_s dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class Case:
    """One measurement: a model (with config overrides) at one size, batch, device, dtype and mode.

    ``batch`` is "max" when the largest batch that fits is searched (CUDA). ``label`` is
    the name reports use; it is not part of the key. ``threads`` (torch's intra-op
    threads; None: torch's default) is part of the key only when set, so keys of
    records written before it existed stay the same.
    """

    model: str
    img_size: int
    patch_size: int | None = None
    batch: int | str = 1
    device: str = "cpu"
    dtype: str = "float32"
    mode: str = "infer"
    overrides: dict = field(default_factory=dict)
    channels_last: bool = False
    compile: bool = False
    label: str = ""
    threads: int | None = None

    def to_json(self) -> dict:
        """The case as stored in each record (``label`` is stored beside it, not in it)."""
        d = asdict(self)
        d.pop("label")
        if d["threads"] is None:
            d.pop("threads")
        return d

    @classmethod
    def from_json(cls, data: dict, label: str = "") -> Case:
        """The inverse of :meth:`to_json`; ValueError when ``data`` is not a case."""
        if not isinstance(data, dict):
            raise ValueError("'case' is not an object")
        missing = [k for k in ("model", "img_size", "batch", "device", "dtype", "mode") if k not in data]
        if missing:
            raise ValueError(f"case lacks {', '.join(missing)}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"case has unknown fields {', '.join(sorted(unknown))}")
        if not isinstance(data.get("overrides", {}), dict):
            raise ValueError("case overrides are not an object")
        return cls(**data, label=label)

    @property
    def key(self) -> str:
        """The canonical key: the stored case as JSON with sorted keys."""
        return case_key(self.to_json())

    @property
    def name(self) -> str:
        return self.label or self.model

    def replace(self, **changes) -> Case:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FlopRecord:
    """The static cost of one case (batch 1, eval mode)."""

    model: str
    img_size: int
    patch_size: int | None  # None for convnets
    tokens: int | None  # S, the tokens the model mixes (ViT: with its class token); None for convnets
    params: int
    macs: int  # fvcore convention: multiply-adds, LayerNorm/BatchNorm counted, attention counted
    activations: int  # fvcore's activation count: output elements of matmuls and convolutions
    uncounted: dict[str, int]  # operator -> how many times it ran without a counting rule
    matmul_macs: int  # the matmul/conv/attention part of ``macs`` (what FlopCounterMode sees)
    device: str = "meta"  # where the forward ran: "meta" (no arithmetic) or "cpu" (real tensors)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FlopRecord:
        return cls(**_fields(cls, data))


@dataclass(frozen=True)
class Timing:
    """Per-step time of a batch of ``batch`` images."""

    median_s: float
    iqr_s: float  # interquartile range of the per-step times
    mean_s: float
    runs: int  # timed blocks
    number_per_run: int  # steps per timed block
    batch: int
    warmup: int  # untimed steps before timing
    times_s: tuple[float, ...] = ()  # per-step time of every timed block

    @property
    def images_per_s(self) -> float:
        return self.batch / self.median_s

    @property
    def relative_iqr(self) -> float:
        return self.iqr_s / self.median_s

    def to_json(self) -> dict:
        return dict(asdict(self), times_s=list(self.times_s), images_per_s=self.images_per_s)

    @classmethod
    def from_json(cls, data: dict) -> Timing:
        values = _fields(cls, data)
        values["times_s"] = tuple(values.get("times_s") or ())
        return cls(**values)


@dataclass(frozen=True)
class MemoryRecord:
    """Peak memory of one step (see ``bench.measure.memory`` for what each method includes)."""

    method: str  # "cuda_max_memory_allocated" or "cpu_peak_rss"
    weights_bytes: int
    peak_bytes: int
    activation_bytes: int
    baseline_bytes: int  # memory before the model was built (CPU: the worker's RSS; CUDA: allocated tensors)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> MemoryRecord:
        return cls(**_fields(cls, data))


@dataclass(frozen=True)
class CostRecord:
    """The deterministic cost of one step beyond MACs (``bench.measure.cost``), counted on the meta device.

    ``bytes_moved``: bytes read plus bytes written by every operator that does work
    (views and other metadata-only operators move nothing): a lower bound on memory
    traffic without fusion. ``peak_activation_bytes``: the peak of the bytes held by
    tensors allocated during the step, weights and the input batch excluded (training:
    gradients and optimizer state excluded too; they are ``gradient_bytes`` and
    ``optimizer_bytes``). ``peak_step_bytes``: the same peak with gradients and optimizer
    state included (what an allocator sees above the weights). ``ops``: operator calls
    that do work (what launch overhead scales with). ``by_class``: the same per operator
    class (``bench.measure.opclass.CLASSES``): ``bytes_moved``, ``ops``, ``flops``.
    ``kernels``: distinct operator calls ``[class, op, flops, bytes, count]``, enough
    to price the step on any roofline (``bench.measure.cost.predict``).
    """

    model: str
    img_size: int
    patch_size: int | None
    tokens: int | None
    batch: int
    dtype: str
    mode: str
    device: str  # the device whose kernels and autocast policy were modelled
    attention: str | None  # ViT attention backend, None for other models
    bytes_moved: int
    peak_activation_bytes: int
    ops: int
    flops: int  # arithmetic of every operator (matmuls 2 per MAC, backward included; elementwise 1 per element)
    peak_step_bytes: int
    by_class: dict[str, dict]
    gradient_bytes: int | None = None  # train only
    optimizer_bytes: int | None = None  # train only
    kernels: list = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CostRecord:
        return cls(**_fields(cls, data))
