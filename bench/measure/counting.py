"""Parameters, MACs and activations per case, with attention counted, without running the model.

:func:`count` builds the model on the meta device (no weights, no arithmetic) and runs
one batch-1 forward under :class:`MacCounter`, a ``TorchDispatchMode`` that sees every
aten operator and counts it in **fvcore's convention**:

* one multiply-add = 1 (MACs): ``mm``, ``addmm``, ``bmm``, ``baddbmm``,
  ``convolution`` (biases not counted) and every fused
  ``_scaled_dot_product_*_attention`` (q k^T plus attn v: S_q * S_k * (d_qk + d_v)
  per batch and head). This is the *matmul/conv/attention part* that
  :func:`flop_counter_macs` and :mod:`bench.measure.formulas` cross-check.
* normalisation as fvcore counts it: LayerNorm and GroupNorm 5 per element (4 without
  affine), BatchNorm in eval mode 2 per element (1 without affine; training: 5 or 4),
  and fvcore's upsampling / adaptive-pool / grid-sample rules.
* activations as fvcore's ActivationCountAnalysis: the output elements of every
  matmul and convolution (for fused attention, those of q k^T and attn v, as the
  explicit backend has them).
* everything that does arithmetic but has no rule (``gelu``, ``add``, ``softmax``,
  ``mean``, ``max_pool2d``...) is *uncounted*, as in fvcore, and listed by operator in
  :attr:`Counts.uncounted`; pure data movement (views, ``cat``, ``clone``...) is
  ignored. No warning is printed: the record says what was skipped.

Why not fvcore itself: fvcore traces with ``torch.jit``, and under tracing torch 2.14's
meta kernel for convolution receives sizes as tensors and fails ("cond must be a bool,
but got a Tensor"), so fvcore can only count our models (all of which start with a
convolution) by executing them on real tensors. :func:`fvcore_count` does exactly that,
with a handle for ``aten::scaled_dot_product_attention`` added, as the independent
cross-check at sizes where running is cheap. The one known difference: fvcore counts
``adaptive_avg_pool2d`` (ResNet's global pool) as one MAC per input element, whereas at
the dispatcher it arrives as ``mean``, which fvcore leaves uncounted elsewhere; we report
it as uncounted (0.002% of ResNet-50's MACs).

Models are counted in eval mode at batch 1. ``timm:<name>`` peers are counted on meta
as well (timm's shape asserts only trouble fvcore's tracer, not a dispatch mode); a timm
model that cannot run on the meta device is counted on real CPU tensors instead (zero
weights, one thread) and its record says ``device="cpu"``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch._prims_common import compute_elementwise_output_strides
from torch.utils._python_dispatch import TorchDispatchMode

import architectures
from bench.measure.opclass import MOVEMENT_OPS
from bench.measure.timing import torch_threads
from bench.schema import Case, Counts

aten = torch.ops.aten


def _numel(shape) -> int:
    return math.prod(int(s) for s in shape)


def _sdpa_macs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int]:
    """MACs and activations of softmax(q k^T) v: (..., S_q, d) x (..., S_k, d) x (..., S_k, d_v)."""
    rows = _numel(q.shape[:-1])  # batch * heads * S_q
    s_k = int(k.shape[-2])
    macs = rows * s_k * int(q.shape[-1]) + rows * s_k * int(v.shape[-1])
    activations = rows * s_k + rows * int(v.shape[-1])
    return macs, activations


def _conv_macs(args, out: torch.Tensor) -> int:
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    if transposed:  # weight (C_in, C_out / groups, *k): every input position scatters into the output
        return int(x.shape[0]) * _numel(x.shape[2:]) * _numel(w.shape)
    return int(out.shape[0]) * _numel(out.shape[2:]) * _numel(w.shape)  # weight (C_out, C_in / groups, *k)


@dataclass(frozen=True)
class Rule:
    """How one operator is counted: ``kind`` "matmul" (returns MACs, activations), "norm" (returns MACs) or "movement" (nothing)."""

    kind: str
    fn: Callable | None = None


# The one table of counting rules: operator overload packet -> Rule, filled by @rule.
RULES: dict = {}


def rule(kind: str, *packets):
    """Register the decorated function as the ``kind`` rule of ``packets`` (a packet registered twice is an error)."""

    def register(fn):
        for packet in packets:
            if packet in RULES:
                raise RuntimeError(f"{packet} has two counting rules")
            RULES[packet] = Rule(kind, fn)
        return fn

    return register


@rule("matmul", aten.mm)
def _mm(func, args, kwargs, out) -> tuple[int, int]:
    a, b = args
    return int(a.shape[0]) * int(a.shape[1]) * int(b.shape[1]), out.numel()


@rule("matmul", aten.addmm)
def _addmm(func, args, kwargs, out) -> tuple[int, int]:
    return _mm(func, args[1:3], kwargs, out)


@rule("matmul", aten.bmm)
def _bmm(func, args, kwargs, out) -> tuple[int, int]:
    a, b = args
    return int(a.shape[0]) * int(a.shape[1]) * int(a.shape[2]) * int(b.shape[2]), out.numel()


@rule("matmul", aten.baddbmm)
def _baddbmm(func, args, kwargs, out) -> tuple[int, int]:
    return _bmm(func, args[1:3], kwargs, out)


@rule("matmul", aten.convolution)
def _convolution(func, args, kwargs, out) -> tuple[int, int]:
    return _conv_macs(args, out), out.numel()


# The fused attention kernels' forward operators (the ones this torch build has); bench.measure.cost reads them too.
SDPA_FORWARD = tuple(
    getattr(aten, name)
    for name in (
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    )
    if hasattr(aten, name)
)


@rule("matmul", *SDPA_FORWARD)
def _fused_attention(func, args, kwargs, out) -> tuple[int, int]:
    """Fused attention kernels take (q, k, v, ...)."""
    return _sdpa_macs(args[0], args[1], args[2])


def _argument(func, args, kwargs, name: str):
    """The value of argument ``name`` of an aten call, by its schema."""
    if name in kwargs:
        return kwargs[name]
    names = [a.name for a in func._schema.arguments]
    return args[names.index(name)]


@rule("norm", aten.native_layer_norm)
def _layer_norm(func, args, kwargs, out) -> int:
    return args[0].numel() * (5 if args[2] is not None else 4)


@rule("norm", aten.native_group_norm)
def _group_norm(func, args, kwargs, out) -> int:
    return args[0].numel() * (5 if args[1] is not None else 4)


@rule("norm", aten.native_batch_norm, aten._native_batch_norm_legit)
def _batch_norm(func, args, kwargs, out) -> int:
    training = bool(_argument(func, args, kwargs, "training"))  # its position differs between overloads
    affine = args[1] is not None
    if training:
        return args[0].numel() * (5 if affine else 4)
    return args[0].numel() * (2 if affine else 1)


@rule("norm", aten._native_batch_norm_legit_no_training)
def _batch_norm_eval(func, args, kwargs, out) -> int:
    return args[0].numel() * (2 if args[1] is not None else 1)


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@rule("norm", aten.upsample_nearest2d)
def _upsample_nearest(func, args, kwargs, out) -> int:
    return _first(out).numel()


@rule("norm", aten.upsample_bilinear2d, aten.grid_sampler_2d)
def _upsample_bilinear(func, args, kwargs, out) -> int:
    return 4 * _first(out).numel()


@rule("norm", aten._adaptive_avg_pool2d)
def _adaptive_avg_pool(func, args, kwargs, out) -> int:
    return args[0].numel()


# Data movement and allocation: no arithmetic at all (the one list, shared with the operator classes).
rule("movement", *(getattr(aten, name) for name in sorted(MOVEMENT_OPS) if hasattr(aten, name)))(None)


def ops_of(kind: str) -> frozenset:
    """The operators whose rule is of ``kind``."""
    return frozenset(p for p, r in RULES.items() if r.kind == kind)


def _jit_name(packet) -> str:
    """aten.gelu -> 'aten::gelu', the spelling fvcore uses."""
    return str(packet).replace(".", "::", 1)


def _empty(like: torch.Tensor, shape, stride=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A new meta tensor of ``like``'s dtype (or ``dtype``): contiguous, or of the strides given (torch's own
    ``new_empty`` and ``empty_like`` run Python reference code on meta, ``empty_strided`` does not)."""
    shape = tuple(int(n) for n in shape)
    if stride is None:
        stride, inner = [], 1
        for n in reversed(shape):
            stride.append(inner)
            inner *= max(n, 1)
        stride = stride[::-1]
    return torch.empty_strided(shape, tuple(stride), dtype=dtype or like.dtype, device="meta")


def _like(x: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(x)``: the same strides when ``x`` is contiguous."""
    return _empty(x, x.shape, x.stride()) if x.is_contiguous() else torch.empty_like(x)


def _cat(tensors, dim: int) -> torch.Tensor | None:
    """``torch.cat`` of meta tensors (a class token before the patches): contiguous, as the kernel gives it when the
    inputs are contiguous or have no memory format to keep (not 4- or 5-dimensional), in the inputs' promoted dtype
    (under autocast a float32 class token meets float16 patches)."""
    if not tensors or not all(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in tensors):
        return None
    first = tensors[0]
    if first.dim() == 0 or not all(t.dim() == first.dim() for t in tensors):
        return None
    dim %= first.dim()
    if not all(
        (t.is_contiguous() or first.dim() not in (4, 5))
        and t.shape[:dim] + t.shape[dim + 1 :] == first.shape[:dim] + first.shape[dim + 1 :]
        for t in tensors
    ):
        return None
    shape = list(first.shape)
    shape[dim] = sum(int(t.shape[dim]) for t in tensors)
    dtype = first.dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return _empty(first, shape, dtype=dtype)


def _meta_shortcut(func, args, kwargs):
    """The outputs of the slowest meta kernels, built directly; None where not covered.

    On meta, most time goes to torch's Python reference kernels for LayerNorm,
    BatchNorm, addmm, GELU and softmax, which only compute output shapes and strides.
    These few are simple enough to state directly (same shapes and strides as the
    kernels give; checked against them in tests/measure/test_counting.py), which makes counting
    the zoo about three times faster. Anything else, or anything not on meta, runs the
    real kernel.
    """
    if func is aten.cat.default and not kwargs and len(args) == 2 and isinstance(args[1], int):
        return _cat(args[0], args[1])
    if kwargs or not args or not isinstance(args[0], torch.Tensor) or args[0].device.type != "meta":
        return None
    packet = func.overloadpacket
    x = args[0]
    if packet is aten.native_layer_norm:
        stat = tuple(x.shape[: x.dim() - len(args[1])]) + (1,) * len(args[1])
        return _empty(x, x.shape), _empty(x, stat), _empty(x, stat)
    if packet is aten.native_batch_norm and x.dim() >= 2:
        return _like(x), _empty(x, (x.shape[1],)), _empty(x, (x.shape[1],))
    if packet is aten.addmm and args[1].dim() == 2 and args[2].dim() == 2:
        return _empty(x, (args[1].shape[0], args[2].shape[1]))
    if packet in (aten.gelu, aten.relu) and len(args) == 1:
        return _like(x)
    if packet in (aten.relu_, aten.gelu_):
        return x
    if packet is aten._safe_softmax:
        return _empty(x, x.shape)
    if packet is aten.mul and isinstance(args[1], (int, float)):
        return _like(x)
    if packet is aten.add and len(args) == 2 and isinstance(args[1], torch.Tensor):
        y = args[1]
        dtype = torch.promote_types(x.dtype, y.dtype)  # autocast adds float16 to float32 (a position embedding)
        if x.shape == y.shape:  # the layout the elementwise kernels give (torch's own rule)
            if x.stride() == y.stride() and x.is_contiguous():
                return _empty(x, x.shape, dtype=dtype)
            return _empty(x, x.shape, compute_elementwise_output_strides(x, y), dtype=dtype)
        lead = 0  # y's leading dimensions of size 1 (a position embedding's batch of 1)
        while lead < y.dim() - 1 and y.shape[lead] == 1:
            lead += 1
        trailing = tuple(y.shape[lead:])
        if (  # a bias or an embedding: y broadcast along x's leading dimensions
            0 < y.dim() <= x.dim()
            and trailing == tuple(x.shape[x.dim() - len(trailing) :])
            and x.is_contiguous()
            and y.is_contiguous()
        ):
            return _empty(x, x.shape, dtype=dtype)
    if packet is aten.mean and len(args) in (2, 3) and x.is_contiguous() and x.is_floating_point():
        dims = {d % x.dim() for d in args[1]} if isinstance(args[1], (list, tuple)) and args[1] else None
        keep = len(args) == 3 and args[2] is True
        if dims is not None and (len(args) == 2 or isinstance(args[2], bool)):
            return _empty(x, [1 if d in dims else n for d, n in enumerate(x.shape) if keep or d not in dims])
    return None


# Argument values that may be part of a call's key (anything else makes the call run its kernel every time).
_PLAIN = frozenset((int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout))


class _NoKey(Exception):
    pass


def _key_part(value):
    kind = type(value)
    if kind in _PLAIN:
        return kind, value
    if kind is list or kind is tuple:
        return kind, *map(_key_part, value)
    if isinstance(value, torch.Tensor) and value.device.type == "meta" and value.layout == torch.strided:
        return value.shape, value.stride(), value.dtype, value.storage_offset()
    raise _NoKey


def _call_key(func, args, kwargs) -> tuple | None:
    """What a meta kernel's outputs can depend on: the operator, every tensor's shape, stride, dtype and storage
    offset, every other argument's type and value, and the default dtype. None when some argument is neither a
    meta tensor nor a plain value."""
    try:
        return func, torch.get_default_dtype(), _key_part(args), _key_part(sorted(kwargs.items()))
    except _NoKey:
        return None


def _fresh_layouts(func, args, kwargs, out) -> tuple | None:
    """(container type, [(shape, stride, dtype)]) of a functional operator's ``out`` when every output is a fresh
    meta tensor of its own (a storage of exactly the size its layout needs, at offset 0); None otherwise."""
    outs = (out,) if isinstance(out, torch.Tensor) else out
    if not isinstance(outs, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in outs):
        return None
    storages = {t.untyped_storage()._cdata for t in tensors((args, kwargs))}
    layouts = []
    for t in outs:
        storage = t.untyped_storage()
        if t.device.type != "meta" or t._is_view() or t.storage_offset() or storage._cdata in storages:
            return None
        storages.add(storage._cdata)
        span = 0 if t.numel() == 0 else 1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride()))
        if storage.nbytes() != span * t.element_size():
            return None
        layouts.append((tuple(t.shape), t.stride(), t.dtype))
    return (None if isinstance(out, torch.Tensor) else type(out)), tuple(layouts)


def tensors(value) -> list[torch.Tensor]:
    """The tensors in ``value`` (a tensor, or nested lists, tuples and dict values), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    found: list[torch.Tensor] = []
    _collect(value, found)
    return found


def _collect(value, found: list[torch.Tensor]) -> None:
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for v in items:
        if isinstance(v, torch.Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple, dict)):
            _collect(v, found)


_FUNCTIONAL: dict = {}  # operator -> neither writes to nor returns a view of its arguments


class MetaKernels:
    """Run an aten operator, on meta tensors replaying the outputs of an earlier call with the same key.

    On the meta device a kernel only works out its outputs' shapes, strides and dtypes,
    many of them in Python (torch's reference implementations), and a model makes the same
    call, with the same layouts, block after block; counting and costing a case make the
    same calls again. The first call with a given key (:func:`_call_key`) runs the kernel;
    when its outputs were fresh tensors (:func:`_fresh_layouts`), later calls get new
    empty meta tensors of exactly those layouts without running it. Views, in-place
    operators, anything not on meta and anything with other arguments always run the
    kernel, so what a dispatch mode sees is the same with or without the replay (checked
    in tests/measure/test_counting.py and test_cost.py). The keys held are cleared past
    ``limit``.
    """

    def __init__(self, limit: int = 200_000):
        self.limit = limit
        self._layouts: dict[tuple, tuple | None] = {}

    def __call__(self, func, args, kwargs):
        functional = _FUNCTIONAL.get(func)
        if functional is None:
            schema = func._schema
            functional = _FUNCTIONAL[func] = all(a.alias_info is None for a in (*schema.arguments, *schema.returns))
        key = _call_key(func, args, kwargs) if functional else None
        if key is None:
            return func(*args, **kwargs)
        if key not in self._layouts:
            out = func(*args, **kwargs)
            if len(self._layouts) >= self.limit:
                self._layouts.clear()
            self._layouts[key] = _fresh_layouts(func, args, kwargs, out)
            return out
        found = self._layouts[key]
        if found is None:
            return func(*args, **kwargs)
        container, layouts = found
        outs = [torch.empty_strided(shape, stride, dtype=dtype, device="meta") for shape, stride, dtype in layouts]
        return outs[0] if container is None else container(outs)


# The one cache of meta kernel outputs, shared by :class:`MacCounter` and bench.measure.cost.CostCounter.
META_KERNELS = MetaKernels()


def meta_kernel(func, args, kwargs):
    """``func``'s outputs: built directly (:func:`_meta_shortcut`), replayed (:data:`META_KERNELS`) or computed."""
    out = _meta_shortcut(func, args, kwargs)
    return META_KERNELS(func, args, kwargs) if out is None else out


class MetaMode(TorchDispatchMode):
    """A dispatch mode of the counters, which never run under ``torch.compile``: it opts out of the Dynamo guard
    torch puts around every ``__torch_dispatch__`` (whose first call imports all of ``torch._dynamo``, about 2 s,
    and which wraps every later call)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


class MacCounter(MetaMode):
    """Count MACs (fvcore convention) and activations of every aten operator that runs inside.

    Attributes after use: ``matmul_macs`` and ``norm_macs`` (Counters by operator name),
    ``activations`` (int), ``uncounted`` (Counter: operator -> number of calls).
    ``shortcuts=True`` builds the outputs of a few slow meta kernels directly
    (see :func:`_meta_shortcut`) and replays those of repeated calls (:data:`META_KERNELS`);
    ``False`` runs every kernel. Counts are the same either way.
    """

    def __init__(self, shortcuts: bool = True):
        super().__init__()
        self.shortcuts = shortcuts
        self.matmul_macs: Counter[str] = Counter()
        self.norm_macs: Counter[str] = Counter()
        self.activations = 0
        self.uncounted: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.shortcuts:
            out = func(*args, **kwargs)
        else:
            out = meta_kernel(func, args, kwargs)
        packet = func.overloadpacket
        counting = RULES.get(packet)
        if counting is None:
            self.uncounted[_jit_name(packet)] += 1
        elif counting.kind == "matmul":
            macs, acts = counting.fn(func, args, kwargs, out)
            self.matmul_macs[_jit_name(packet)] += macs
            self.activations += acts
        elif counting.kind == "norm":
            self.norm_macs[_jit_name(packet)] += counting.fn(func, args, kwargs, out)
        return out

    @property
    def total(self) -> int:
        return sum(self.matmul_macs.values()) + sum(self.norm_macs.values())


class _SkipMetaInit(MetaMode):
    """Skip in-place initialisers on meta tensors: they have no data, so nothing changes.

    Building a model on meta otherwise spends most of its time in torch's Python
    reference kernels for ``normal_``/``uniform_`` (weight initialisation). Only ops that
    keep the tensor's shape are skipped; everything else runs.
    """

    SKIPPED = frozenset(
        getattr(aten, name)
        for name in (
            "normal_",
            "uniform_",
            "fill_",
            "zero_",
            "erfinv_",
            "mul_",
            "add_",
            "sub_",
            "div_",
            "clamp_",
            "copy_",
        )
    )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        target = args[0] if args else None
        if func.overloadpacket in self.SKIPPED and isinstance(target, torch.Tensor) and target.device.type == "meta":
            return target
        return func(*args, **(kwargs or {}))


# Reference models that count() built on meta and only read, for the next build() of the same case (a model that
# was counted need not be built again to be costed); the oldest go first past SPARE_MODELS. A convnet's layers do
# not depend on the image size, so one that was only read is handed over at any size (its config's img_size set).
_SPARE: dict[tuple, nn.Module] = {}
SPARE_MODELS = 128


def size_free(model: str) -> bool:
    """Whether a reference model's layers are the same at every image size (a convnet)."""
    return not model.startswith(architectures.TIMM_PREFIX) and architectures.traits(model).patch_size is None


def _build_key(case: Case) -> tuple:
    return (
        case.model,
        None if size_free(case.model) else case.img_size,
        case.patch_size,
        tuple(sorted(case.overrides.items())),
    )


def leave_spare(case: Case, net: nn.Module) -> None:
    """Leave ``net``, a model of ``case`` built by :func:`build` on meta and since only read (eval mode, nothing run
    but forward passes on meta), for the next :func:`build` of the case. timm models are never left."""
    if case.model.startswith(architectures.TIMM_PREFIX):  # timm models may keep state from a forward pass
        return
    _SPARE[_build_key(case)] = net
    while len(_SPARE) > SPARE_MODELS:
        del _SPARE[next(iter(_SPARE))]


def build(case: Case, device: str | torch.device = "meta") -> nn.Module:
    """``architectures.create`` of ``case``'s model, size, patch size and overrides on ``device``, in eval mode
    (the case's own device, batch, dtype and mode do not matter). Raises ValueError on a bad case.

    The model is the caller's to change. On meta it may be one left by :func:`leave_spare` (by :func:`count` for
    the same case, or by an inference cost of the same convnet at any size), which it hands over instead of
    building it again."""
    if torch.device(device).type == "meta" and not case.model.startswith(architectures.TIMM_PREFIX):
        spare = _SPARE.pop(_build_key(case), None)
        if spare is not None:
            config = getattr(spare, "config", None)
            if config is not None and config.img_size != case.img_size:
                spare.config = replace(config, img_size=case.img_size)
            return spare
    overrides: dict[str, Any] = dict(case.overrides)  # checked by the model's config, not here

    def create() -> nn.Module:
        return architectures.create(case.model, img_size=case.img_size, patch_size=case.patch_size, **overrides)

    with torch.device(device):
        if torch.device(device).type == "meta":
            with _SkipMetaInit():
                net = create()
        else:
            net = create()
    return net.eval()


def example_input(net: nn.Module, img_size: int, device: str | torch.device = "meta") -> torch.Tensor:
    """A batch-1 image for ``net``: zeros on CPU, nothing at all on meta."""
    config = getattr(net, "config", None)
    in_chans = getattr(config, "in_chans", None) or getattr(net, "in_chans", None) or 3
    return torch.zeros(1, in_chans, img_size, img_size, device=device)


def _built_patch_size(net: nn.Module) -> int | None:
    """The patch size of a reference or timm patch model, None for convnets."""
    config = getattr(net, "config", None)
    if config is not None and hasattr(config, "patch_size"):
        return config.patch_size
    embed = getattr(net, "patch_embed", None) or getattr(net, "stem", None)
    size = getattr(embed, "patch_size", None)
    if size is None:
        return None
    return int(size[0]) if isinstance(size, (tuple, list)) else int(size)


def zeros_on_cpu(net: nn.Module) -> nn.Module:
    """Move a meta-built model to CPU with every weight and buffer zero (no random init to pay for).

    Counting depends on shapes only; zeros keep the arithmetic finite and fast.
    """
    net = net.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in list(net.parameters()) + list(net.buffers()):
            tensor.zero_()
    return net


def _run_counted(net: nn.Module, img_size: int, device: str, shortcuts: bool = True) -> MacCounter:
    counter = MacCounter(shortcuts)
    x = example_input(net, img_size, device)
    with torch.no_grad(), counter:
        net(x)
    return counter


def count(case: Case) -> Counts:
    """Parameters, MACs per image (fvcore convention, attention counted) and activations of one case: its model,
    size, patch size (None: the model's own) and overrides; batch, device, dtype and mode do not matter.

    ``case.model`` is a reference name (``architectures.list_models()``) or ``timm:<name>``;
    ``case.overrides`` go to :func:`architectures.create`. Runs on the meta device: no memory
    for weights, no arithmetic, about 0.1 s for a ViT-B. Raises ValueError for an unknown
    model or an ``img_size`` not divisible by the patch size. A reference model counted on meta
    is left for the next :func:`build` of the same case (costing it, say), which takes it over.
    """
    model, img_size = case.model, case.img_size
    net = build(case)
    device = "meta"
    try:
        counter = _run_counted(net, img_size, "meta")
        leave_spare(case, net)
    except (NotImplementedError, RuntimeError) as exc:
        if not model.startswith(architectures.TIMM_PREFIX):
            raise
        logging.getLogger(__name__).info("%s cannot run on meta (%s); counting on CPU tensors", model, exc)
        device = "cpu"
        net = zeros_on_cpu(net)
        with torch_threads(1):  # only shapes matter; one thread avoids OpenMP waits on a busy machine
            counter = _run_counted(net, img_size, "cpu")
    return Counts(
        model=model,
        img_size=img_size,
        patch_size=_built_patch_size(net),
        tokens=architectures.num_tokens(net),
        params=sum(p.numel() for p in net.parameters()),
        macs=counter.total,
        activations=counter.activations,
        uncounted=dict(sorted(counter.uncounted.items())),
        matmul_macs=sum(counter.matmul_macs.values()),
        device=device,
    )


def flop_counter_macs(case: Case) -> int:
    """The matmul/conv/attention MACs of ``case`` (batch 1) by ``torch.utils.flop_counter.FlopCounterMode`` on meta.

    FlopCounterMode counts 2 flops per multiply-add and only matmuls, convolutions and
    attention (on meta SDPA decomposes into ``bmm``, which it counts; on CPU it would
    count the fused kernel as 0), so this is its total divided by 2.
    """
    from torch.utils.flop_counter import FlopCounterMode

    net = build(case)
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        net(example_input(net, case.img_size, "meta"))
    total = mode.get_total_flops()
    if total % 2:
        raise AssertionError(f"FlopCounterMode returned an odd flop count {total}")
    return total // 2


@dataclass(frozen=True)
class FvcoreCount:
    """What fvcore reports for one case, with the SDPA handle added (real tensors, batch 1)."""

    macs: int
    matmul_macs: int  # linear, matmul, conv and attention operators only
    activations: int
    by_operator: dict[str, int]
    uncounted: dict[str, int]  # fvcore's unsupported operators -> number of calls


FVCORE_MATMUL_OPS = ("addmm", "bmm", "conv", "einsum", "matmul", "mm", "linear", "scaled_dot_product_attention")


def fvcore_sdpa_flop_handle(inputs, outputs) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: MACs of q k^T and attn v."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    rows = math.prod(q[:-1])
    return rows * k[-2] * q[-1] + rows * k[-2] * v[-1]


def fvcore_sdpa_activation_handle(inputs, outputs) -> int:
    """Activations of fused attention as the explicit path has them: S_q x S_k scores plus the output."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    rows = math.prod(q[:-1])
    return rows * k[-2] + rows * v[-1]


def fvcore_count(case: Case) -> FvcoreCount:
    """fvcore's FlopCountAnalysis and ActivationCountAnalysis of ``case`` (its model, size, patch size and
    overrides) with the SDPA handles, on real CPU tensors.

    This executes the model twice (one trace per analysis) at batch 1, with zero weights
    and on one thread (fvcore cannot trace our models on meta, see the module docstring):
    use it at sizes where that is cheap. fvcore's warnings about
    unsupported operators are silenced and returned as ``uncounted`` instead.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore's import touches torch.jit.script
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    net = zeros_on_cpu(build(case))
    x = example_input(net, case.img_size, "cpu")
    flops = FlopCountAnalysis(net, (x,)).set_op_handle("aten::scaled_dot_product_attention", fvcore_sdpa_flop_handle)
    acts = ActivationCountAnalysis(net, (x,)).set_op_handle(
        "aten::scaled_dot_product_attention", fvcore_sdpa_activation_handle
    )
    for analysis in (flops, acts):
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
    with torch.no_grad(), torch_threads(1):
        by_op = dict(flops.by_operator())
        activations = int(acts.total())
    return FvcoreCount(
        macs=int(sum(by_op.values())),
        matmul_macs=int(sum(v for k, v in by_op.items() if k in FVCORE_MATMUL_OPS)),
        activations=activations,
        by_operator=by_op,
        uncounted=dict(sorted(flops.unsupported_ops().items())),
    )
