"""Bytes moved, peak activation memory and operator count of one step, counted on the meta device.

:func:`cost` builds the model on the meta device (as :func:`bench.measure.counting.count`
does), makes the step that :func:`bench.measure.timing.make_step` makes (inference: a
forward pass under ``inference_mode``; training: forward, cross-entropy, backward and an
SGD step) and runs it under two modes:

* :class:`Autocast`, a ``TorchFunctionMode`` that does what ``torch.autocast`` does on the
  modelled device for the operators these models use (autocast cannot run on meta
  tensors): matmuls, convolutions and attention in the lower precision, LayerNorm,
  GroupNorm, softmax and the loss in float32 (CUDA autocast's lists), everything else in
  the dtype its inputs promote to. It works above autograd, as autocast does, so the
  backward pass sees the same dtypes. It also runs ``scaled_dot_product_attention`` as
  the fused kernel the device would pick (CUDA: flash for half precision, memory-efficient
  for float32 or with an additive bias such as BEiT's relative positions; CPU: flash for CPU): on meta the public function would fall back to the
  math path and materialise the S x S matrix, which the fused kernels never do.
* :class:`CostCounter`, a ``TorchDispatchMode`` that sees every aten operator the step
  runs, forward, backward and optimizer alike, and counts

  - ``ops``: operator calls that do work. Metadata-only calls (views: every output shares
    storage with an input and nothing is written) and pure allocations (``empty``) are not
    operators that launch work and are not counted;
  - ``bytes_moved``: for every operator that does work, the bytes of every tensor input
    (the elements its strides address: a broadcast input is read once) plus the bytes of
    every output it allocates or input it writes. A lower bound on memory traffic
    without fusion; the destination of ``copy_``/``fill_``/``zero_`` is written, not read;
  - ``flops``: 2 per multiply-add for matmuls, convolutions and attention (the counting
    rules of :mod:`bench.measure.counting`, plus the backward kernels of convolution and
    fused attention here), 1 per element written for every other operator;
  - the live bytes: every storage an operator allocates is followed until it is freed
    (``weakref.finalize`` on the meta storage: torch keeps a storage's Python object alive
    exactly as long as the storage), so the peak of live bytes is the peak memory an
    exact allocator would need above the weights and the input batch.

  Each call is classified by :func:`bench.measure.opclass.classify` with the innermost
  module it ran in (``torch.utils.module_tracker.ModuleTracker``, forward and backward).

Training: ``gradient_bytes`` are the parameters' ``.grad`` storages after the step,
``optimizer_bytes`` the optimizer's state (SGD without momentum, as ``make_step`` uses:
none); ``peak_activation_bytes`` leaves both out, ``peak_step_bytes`` includes them.

Why not torch's own trackers: ``torch.distributed._tools.mem_tracker.MemTracker`` and
``RuntimeEstimator`` work under ``FakeTensorMode``, and this project's models are built on
meta (their initialisers did not run under ``FakeTensorMode``); under a fake CUDA device
autocast disables itself on a machine without CUDA, and SDPA's backend choice is not the
GPU's. ``MemTracker`` also attributes memory per module, not per operator class, and
counts no bytes moved. ``torch.utils.flop_counter`` counts only matmul FLOPs. The meta
device, two small modes and the one rule table of the MAC counter do all of it, in
about a second for a ViT-B training step.
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

import architectures
from bench.measure import counting
from bench.measure.opclass import CLASSES, classify
from bench.schema import Case, ClassCost, Cost

aten = torch.ops.aten

LOWER_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}

# torch.autocast's lists (CUDA, torch/csrc/autocast_mode.cpp) for the functions these models call.
AUTOCAST_LOWER = frozenset(
    (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "matmul",
        "__matmul__",
        "__rmatmul__",
        "mm",
        "bmm",
        "addmm",
        "baddbmm",
        "addbmm",
        "einsum",
    )
)
AUTOCAST_FP32 = frozenset(
    (
        "layer_norm",
        "group_norm",
        "softmax",
        "log_softmax",
        "cross_entropy",
        "nll_loss",
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "binary_cross_entropy_with_logits",
        "logsumexp",
        "cumsum",
        "prod",
        "norm",
    )
)

# Allocations: they hold memory but do no work.
ALLOCATIONS = frozenset((aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty, aten.new_empty_strided))
# Operators whose mutated argument is only written (not read first).
WRITE_ONLY = frozenset((aten.copy_, aten.fill_, aten.zero_, aten.normal_, aten.uniform_))

_SDPA_BACKWARD = tuple(
    getattr(aten, name)
    for name in (
        "_scaled_dot_product_flash_attention_backward",
        "_scaled_dot_product_flash_attention_for_cpu_backward",
        "_scaled_dot_product_efficient_attention_backward",
        "_scaled_dot_product_cudnn_attention_backward",
    )
    if hasattr(aten, name)
)


def _extent_bytes(t: torch.Tensor) -> int:
    """The bytes of the distinct elements a tensor's strides address (a broadcast dimension counts once)."""
    if t.numel() == 0:
        return 0
    return math.prod(int(s) for s, st in zip(t.shape, t.stride()) if st != 0) * t.element_size()


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


_MUTATED: dict = {}


def _mutated_positions(func) -> tuple[list[int], list[str]]:
    """Positions and names of the arguments ``func`` writes to (its schema's ``Tensor(a!)``)."""
    found = _MUTATED.get(func)
    if found is None:
        args = func._schema.arguments
        found = (
            [i for i, a in enumerate(args) if a.alias_info is not None and a.alias_info.is_write],
            [a.name for a in args if a.alias_info is not None and a.alias_info.is_write],
        )
        _MUTATED[func] = found
    return found


def _flops(func, args, kwargs, out, written: list[torch.Tensor]) -> int:
    packet = func.overloadpacket
    rule = counting.RULES.get(packet)
    if rule is not None and rule.kind == "matmul":
        macs, _ = rule.fn(func, args, kwargs, out)
        return 2 * macs
    if packet is aten.convolution_backward:
        grad_out, _, weight = args[0], args[1], args[2]
        mask = args[10] if len(args) > 10 else kwargs.get("output_mask", (True, True, True))
        macs = int(grad_out.shape[0]) * math.prod(int(s) for s in grad_out.shape[2:]) * weight.numel()
        return 2 * macs * (int(bool(mask[0])) + int(bool(mask[1])))
    if packet in _SDPA_BACKWARD:
        q, k, v = args[1], args[2], args[3]
        rows = math.prod(int(s) for s in q.shape[:-1])
        # recompute q k^T, dP = dO v^T, dV = P^T dO, dQ = dS k, dK = dS^T q
        return 2 * rows * int(k.shape[-2]) * (3 * int(q.shape[-1]) + 2 * int(v.shape[-1]))
    return sum(t.numel() for t in written)


_SDPA_FORWARD = counting.SDPA_FORWARD
_COMPOSITE: dict = {}  # operator -> whether it has a CompositeImplicitAutograd kernel (is decomposed)
_CLASSES: dict = {}  # (operator, module path) -> its class


def _order(t: torch.Tensor) -> tuple[int, ...]:
    """The dimensions of ``t`` from the outermost in memory to the innermost, leaving out size-1 and broadcast ones."""
    dims = [d for d in range(t.dim()) if t.shape[d] > 1 and t.stride(d) != 0]
    strides = t.stride()
    return tuple(sorted(dims, key=lambda d: strides[d], reverse=True))


def _crossed(tensors: list[torch.Tensor]) -> bool:
    """Whether same-shaped tensors an operator touches are laid out in different dimension orders."""
    orders: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    for t in tensors:
        if t.dim() >= 2:
            orders.setdefault(tuple(t.shape), set()).add(_order(t))
    return any(len(found) > 1 for found in orders.values())


def _gemm(func, args, out) -> tuple[int, ...]:
    """(batch, M, N, K) of an operator that runs as matrix products (see ``bench.schema.ShapedKernel``), else ()."""
    packet = func.overloadpacket
    dims = lambda t: [int(s) for s in t.shape]  # noqa: E731
    if packet in (aten.mm, aten.addmm):
        a, b = (args[0], args[1]) if packet is aten.mm else (args[1], args[2])
        return (1, dims(a)[0], dims(b)[1], dims(a)[1])
    if packet in (aten.bmm, aten.baddbmm):
        a, b = (args[0], args[1]) if packet is aten.bmm else (args[1], args[2])
        return (dims(a)[0], dims(a)[1], dims(b)[2], dims(a)[2])
    if packet is aten.convolution:  # implicit GEMM: M = images x output pixels, N = out channels / group
        weight, groups, y = args[1], int(args[8]), out
        return (
            groups,
            int(y.shape[0]) * math.prod(dims(y)[2:]),
            int(weight.shape[0]) // groups,
            math.prod(dims(weight)[1:]),
        )
    if packet is aten.convolution_backward:  # the input gradient's GEMM (the weight gradient's is as large)
        grad_out, weight, groups = args[0], args[2], int(args[9])
        return (
            groups,
            int(grad_out.shape[0]) * math.prod(dims(grad_out)[2:]),
            math.prod(dims(weight)[1:]),
            int(weight.shape[0]) // groups,
        )
    if packet in _SDPA_FORWARD or packet in _SDPA_BACKWARD:
        q, k = (args[0], args[1]) if packet in _SDPA_FORWARD else (args[1], args[2])
        return (math.prod(dims(q)[:-2]), dims(q)[-2], dims(k)[-2], dims(q)[-1])
    return ()


@dataclass
class ClassTally:
    """What one operator class did so far in the counted step (becomes its :class:`~bench.schema.ClassCost`)."""

    bytes_moved: int = 0
    ops: int = 0
    flops: int = 0


class CostCounter(counting.MetaMode):
    """Count operators, bytes moved and live bytes of every aten call inside (see the module doc).

    ``tracker`` (a ``ModuleTracker``) names the module each call runs in; without one
    every call is classified as if outside any module.
    """

    def __init__(self, tracker=None):
        super().__init__()
        self.tracker = tracker
        self.ops = 0
        self.bytes_moved = 0
        self.flops = 0
        self.by_class = {c: ClassTally() for c in CLASSES}
        self.kernels: Counter = Counter()  # (class, op, flops, bytes) -> calls
        self.shaped: Counter = Counter()  # (class, op, dtype, flops, bytes, gemm, crossed) -> calls
        self.events: list[tuple[int, int]] = []  # (allocation id, +bytes on allocation / -bytes on free), in order
        self._live: dict[int, int] = {}  # storage address -> allocation id
        self._sizes: dict[int, int] = {}
        self._closed = False

    # -- lifetimes ----------------------------------------------------------------------------
    def _allocated(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        address = storage._cdata
        if address in self._live:
            return
        ident = len(self._sizes)
        size = int(storage.nbytes())
        self._live[address] = ident
        self._sizes[ident] = size
        self.events.append((ident, size))
        weakref.finalize(storage, self._freed, address, ident)

    def _freed(self, address: int, ident: int) -> None:
        if self._closed:
            return
        if self._live.get(address) == ident:
            del self._live[address]
        self.events.append((ident, -self._sizes[ident]))

    def allocation_of(self, t: torch.Tensor) -> int | None:
        """The allocation id of a live tensor's storage, None when it was not allocated inside."""
        return self._live.get(_storage_key(t))

    def close(self) -> None:
        """Stop following lifetimes (storages freed later, e.g. the weights' gradients, are not events)."""
        self._closed = True

    def peak(self, exclude: frozenset | set = frozenset()) -> int:
        """The peak of live bytes over the step, leaving out the allocations in ``exclude``."""
        live = peak = 0
        for ident, delta in self.events:
            if ident in exclude:
                continue
            live += delta
            peak = max(peak, live)
        return peak

    # -- the operators ------------------------------------------------------------------------
    def _module_path(self) -> str:
        if self.tracker is None:
            return ""
        parents = [p for p in self.tracker.parents if p != "Global"]
        return max(parents, key=lambda p: p.count(".")) if parents else ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        composite = _COMPOSITE.get(func)
        if composite is None:
            composite = _COMPOSITE[func] = torch._C._dispatch_has_kernel_for_dispatch_key(
                func.name(), torch._C.DispatchKey.CompositeImplicitAutograd
            )
        if composite:
            # Under inference_mode composite operators (linear, matmul, layer_norm, reshape)
            # arrive whole; the kernels that run are those of their decomposition.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = counting.meta_kernel(func, args, kwargs)  # the kernel, or outputs built without it (counting)
        inputs = counting.tensors((args, kwargs))
        outputs = counting.tensors(out)
        in_storages = {_storage_key(t) for t in inputs}
        positions, names = _mutated_positions(func)
        mutated = [args[i] for i in positions if i < len(args) and isinstance(args[i], torch.Tensor)]
        mutated += [kwargs[n] for n in names if isinstance(kwargs.get(n), torch.Tensor)]
        fresh = [t for t in outputs if _storage_key(t) not in in_storages]
        for t in fresh:
            self._allocated(t)
        packet = func.overloadpacket
        if packet in ALLOCATIONS or (not mutated and not fresh):
            return out  # an allocation or a view: no work
        skip = {id(t) for t in mutated} if packet in WRITE_ONLY else set()
        seen, read = set(), 0
        for t in inputs:
            layout = (_storage_key(t), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
            if id(t) in skip or layout in seen:
                continue
            seen.add(layout)
            read += _extent_bytes(t)
        written_tensors = fresh + mutated
        written = sum(_extent_bytes(t) for t in written_tensors)
        flops = _flops(func, args, kwargs, out, written_tensors)
        path = self._module_path()
        cls = _CLASSES.get((packet, path))
        if cls is None:
            cls = _CLASSES[(packet, path)] = classify(str(packet), path)
        moved = read + written
        self.ops += 1
        self.bytes_moved += moved
        self.flops += flops
        entry = self.by_class[cls]
        entry.ops += 1
        entry.bytes_moved += moved
        entry.flops += flops
        self.kernels[(cls, counting._jit_name(packet), flops, moved)] += 1
        dtype = str(written_tensors[0].dtype).removeprefix("torch.") if written_tensors else ""
        gemm = _gemm(func, args, out)
        crossed = not gemm and _crossed(inputs + written_tensors)
        self.shaped[(cls, counting._jit_name(packet), dtype, flops, moved, gemm, crossed)] += 1
        return out


def _fn_name(func) -> str:
    return getattr(func, "__name__", "")


class Autocast(TorchFunctionMode):
    """``torch.autocast`` for meta tensors, and SDPA as the fused kernel ``device`` would run (see the module doc).

    ``dtype`` "float32" casts nothing. ``cache_weights``: keep one cast copy of each
    weight (a leaf that requires grad) for the whole step, as autocast's cast cache does
    while gradients are recorded; with gradients off (inference) every use casts anew.
    """

    def __init__(self, dtype: str = "float32", device: str = "cpu"):
        super().__init__()
        self.lower = LOWER_DTYPES.get(dtype)
        self.device = device
        self._cache: dict[int, torch.Tensor] = {}

    def _cast(self, value, to: torch.dtype, only_from: torch.dtype | None):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dtype == to:
            return value
        if only_from is not None and value.dtype != only_from:
            return value
        cache = torch.is_grad_enabled() and value.is_leaf and value.requires_grad
        if cache and id(value) in self._cache:
            return self._cache[id(value)]
        cast = value.to(to)
        if cache:
            self._cache[id(value)] = cast
        return cast

    def _cast_all(self, args, kwargs, to, only_from):
        args = tuple(self._cast(a, to, only_from) for a in args)
        kwargs = {k: self._cast(v, to, only_from) for k, v in kwargs.items()}
        return args, kwargs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _fn_name(func)
        if self.lower is not None:
            if name in AUTOCAST_LOWER or name == "scaled_dot_product_attention":
                args, kwargs = self._cast_all(args, kwargs, self.lower, torch.float32)
            elif name in AUTOCAST_FP32:
                args, kwargs = self._cast_all(args, kwargs, torch.float32, None)
        if name == "scaled_dot_product_attention":
            return self._attention(func, *args, **kwargs)
        return func(*args, **kwargs)

    def _attention(self, func, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **rest):
        masked = attn_mask is not None and attn_mask.is_floating_point() and attn_mask.dtype == query.dtype
        if self.device == "cuda" and masked and not (is_causal or dropout_p or rest.get("enable_gqa")):
            # an additive bias (BEiT's relative positions): flash takes none, the memory-efficient kernel reads it
            grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value, attn_mask))
            bias = attn_mask.expand(*query.shape[:-2], query.shape[-2], key.shape[-2])
            return aten._scaled_dot_product_efficient_attention(query, key, value, bias, grad, 0.0, False, scale=scale)[
                0
            ]
        if attn_mask is not None or is_causal or dropout_p or rest.get("enable_gqa"):
            return func(
                query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **rest
            )
        if self.device == "cuda":
            if query.dtype in (torch.float16, torch.bfloat16):
                return aten._scaled_dot_product_flash_attention(query, key, value, 0.0, False, False, scale=scale)[0]
            grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
            return aten._scaled_dot_product_efficient_attention(query, key, value, None, grad, 0.0, False, scale=scale)[
                0
            ]
        return aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, False, scale=scale)[0]


def _optimizer_of(step):
    """The optimizer a ``make_step`` training step closes over (None for inference)."""
    for cell in step.__closure__ or ():
        if isinstance(cell.cell_contents, torch.optim.Optimizer):
            return cell.cell_contents
    return None


def cost(case: Case, batch: int | None = None) -> Cost:
    """The :class:`Cost` of one step of ``case`` (see the module doc) at its batch (``batch`` when the case's own is
    "max" and has been searched); nothing is allocated.

    ``case.device`` is the device whose autocast policy and attention kernel are modelled
    ("cpu" or "cuda"); the step itself runs on meta. Raises ValueError on a bad case.
    """
    from torch.utils.module_tracker import ModuleTracker

    from bench.measure import timing

    model, img_size, mode, dtype, device = case.model, case.img_size, case.mode, case.dtype, case.device
    channels_last = case.channels_last
    batch = int(batch or case.batch)
    net = counting.build(case)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    step = timing.make_step(
        net, batch=batch, img_size=img_size, device="meta", dtype="float32", mode=mode, channels_last=channels_last
    )
    tracker = ModuleTracker()
    counter = CostCounter(tracker)
    with tracker, Autocast(dtype, device), counter:
        step()
    if mode == "infer" and not channels_last and counting.size_free(model):
        counting.leave_spare(case, net)  # only read: a convnet is costed at its next size without a new build
    grads = {counter.allocation_of(p.grad) for p in net.parameters() if p.grad is not None}
    gradient_bytes = sum(counter._sizes[i] for i in grads if i is not None)
    optimizer = _optimizer_of(step)
    state: set[int] = set()
    if optimizer is not None:
        for values in optimizer.state.values():
            for t in tree_leaves(values):
                where = counter.allocation_of(t) if isinstance(t, torch.Tensor) else None
                if where is not None:
                    state.add(where)
    optimizer_bytes = sum(counter._sizes[i] for i in state)
    counter.close()
    config = getattr(net, "config", None)
    train = mode == "train"
    return Cost(
        model=model,
        img_size=img_size,
        patch_size=counting._built_patch_size(net),
        tokens=architectures.num_tokens(net),
        batch=batch,
        dtype=dtype,
        mode=mode,
        device=device,
        attention=getattr(config, "attn_backend", None),
        bytes_moved=counter.bytes_moved,
        peak_activation_bytes=counter.peak(grads | state),
        ops=counter.ops,
        flops=counter.flops,
        peak_step_bytes=counter.peak(),
        by_class={
            c: ClassCost(bytes_moved=t.bytes_moved, ops=t.ops, flops=t.flops)
            for c, t in counter.by_class.items()
            if t.ops
        },
        gradient_bytes=gradient_bytes if train else None,
        optimizer_bytes=optimizer_bytes if train else None,
        kernels=tuple((cls, op, int(f), int(b), n) for (cls, op, f, b), n in sorted(counter.kernels.items())),
        shaped=tuple(
            (c, op, dt, int(f), int(b), n, g, x) for (c, op, dt, f, b, g, x), n in sorted(counter.shaped.items())
        ),
        weight_bytes=sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers())),
        input_bytes=batch * 3 * img_size * img_size * 4,
    )


def copy_bandwidth(device: str, *, nbytes: int | None = None, min_run_time: float = 0.3) -> float:
    """Measured copy bandwidth in bytes/s: one ``nbytes`` float32 tensor copied into another (read + write counted).

    Default size: 64 MiB on CPU (beyond the caches), 1 GiB on CUDA. The memory roof of
    the roofline, measured at the start of a sweep like the matmul roof.
    """
    from bench.measure import timing

    nbytes = nbytes or (2**30 if device == "cuda" else 2**26)
    src = torch.empty(nbytes // 4, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step() -> None:
        dst.copy_(src)
        sync()

    t = timing.time_step(step, batch=1, min_run_time=min_run_time, warmup=2, min_runs=3, label="copy bandwidth")
    return 2 * src.numel() * 4 / t.median_s


def cost_or_none(case: Case, batch: int | None = None) -> Cost | None:
    """:func:`cost`, or None (logged) for a case that cannot run on meta (a timm peer, say): the sweep goes on."""
    import logging

    try:
        return cost(case, batch)
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        logging.getLogger(__name__).warning("%s at %s px: no cost on meta (%s)", case.name, case.img_size, exc)
        return None
