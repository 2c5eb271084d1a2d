"""Time per operator class of one step (``torch.profiler``), and the work of each class (meta-device count).

**Time** (:func:`profile_step`): one step runs under ``torch.profiler.profile``. Every
module of the model pushes a ``record_function`` label ``module::<path>`` in a forward
pre-hook and pops it in its forward hook, so each aten operator the profiler records
sits under the label of the innermost module it ran in. Each operator's *self* time
(CPU; on CUDA also the self device time of its kernels) goes to
``opclass.classify(op, module_path)``: attention, token_mixing, dense, norm_elementwise,
data_movement (the classes the cost model uses). Shares are of the operators' own time
(Python and hook overhead between operators is not attributed); the sweep multiplies
them by the unprofiled median step time.

**Work** (:func:`class_work`): the same model on the meta device under a dispatch mode
that sorts every operator the same way and adds up its work: MACs for matmuls,
convolutions and attention kernels, fvcore's norm MACs for normalisation, output
elements for every other arithmetic operator. A class's work fitted exactly against S
tells whether that class's work is linear or quadratic in S (attention: 2 S^2 d per
block), which is what measured time is judged against
(:mod:`bench.analysis.attribution`).

**Which attention kernel ran** (:func:`attention_kernel`): the fused-attention aten
operator the profile saw (``_scaled_dot_product_flash_attention_for_cpu`` -> "flash",
``_scaled_dot_product_efficient_attention`` -> "efficient", ...); "math" when SDPA fell
back to its decomposition; "explicit" for the explicit backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.measure import counting
from bench.measure.opclass import CLASSES, classify, op_name
from bench.schema import Case

LABEL = "module::"
US = 1e-6

# The aten operator a fused attention call ends in -> the kernel that ran.
SDPA_KERNELS = {
    "_scaled_dot_product_flash_attention_for_cpu": "flash",
    "_scaled_dot_product_flash_attention": "flash",
    "_flash_attention_forward": "flash",
    "_scaled_dot_product_efficient_attention": "efficient",
    "_efficient_attention_forward": "efficient",
    "_scaled_dot_product_cudnn_attention": "cudnn",
    "_scaled_dot_product_fused_attention_overrideable": "overrideable",
    "_scaled_dot_product_attention_math": "math",
}


@contextlib.contextmanager
def module_labels(model: nn.Module):
    """Push a ``record_function`` label per module forward (pre-hook), pop it after (hook)."""
    handles = []
    stack: list = []

    def enter(name):
        def pre(module, args):
            rf = torch.autograd.profiler.record_function(LABEL + name)
            rf.__enter__()
            stack.append(rf)

        return pre

    def leave(module, args, output):
        if stack:
            stack.pop().__exit__(None, None, None)

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        while stack:
            stack.pop().__exit__(None, None, None)


def _owner(event) -> tuple[str, str]:
    """(outermost aten operator the event runs under, innermost module path).

    A kernel's self time belongs to the operator the model called: ``aten::conv2d`` runs
    ``aten::mkldnn_convolution``, ``aten::linear`` runs ``aten::addmm``; classifying the
    outer call puts the time where the model's code put the work.
    """
    top = event.name
    parent = event.cpu_parent
    while parent is not None and parent.name.startswith("aten::"):
        top = parent.name
        parent = parent.cpu_parent
    while parent is not None:
        if parent.name.startswith(LABEL):
            return top, parent.name[len(LABEL) :]
        parent = parent.cpu_parent
    return top, ""


_NOISE = ("USDT:", "STAGE:")


@contextlib.contextmanager
def quiet_profiler_logs():
    """Drop kineto's start/stop chatter ("USDT: ... profiler_start", "gpuGetDeviceCount failed" without a GPU)
    from file descriptor 2; every other line written meanwhile is passed on."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if not line.startswith(_NOISE) and "gpuGetDeviceCount" not in line and "unknown size" not in line:
                    print(line, file=sys.stderr)


def _self_device_us(event) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return 0.0


@dataclass(frozen=True)
class StepProfile:
    """One profiled step (:func:`profile_step`); :func:`bench.runs.rounds.summarise_profiles` makes the record's
    :class:`bench.schema.Profile` of one per round."""

    cpu_s: dict[str, float]  # CPU self time per operator class, s
    device_s: dict[str, float]  # device time per operator class, s (CUDA only, else {})
    tensor_peak_bytes: int | None  # largest rise of live tensor bytes (None: the profiler has no memory events)
    attention_kernel: str | None  # "flash" | "efficient" | "cudnn" | "math" | "explicit" | None
    unattributed_cpu_s: float = 0.0  # self time of events that are no aten operator (compiled steps' fused kernels)
    unattributed_device_s: float = 0.0  # their device time (CUDA)
    unattributed: str | None = None  # why the step cannot be split into classes (None: every operator attributed)


def profile_step(
    model: nn.Module, step: Callable[[], None], device: str = "cpu", compile: str | bool = "none"
) -> StepProfile:
    """Run ``step`` once under the profiler; time per operator class (seconds) and the attention kernel
    (a :class:`StepProfile`).

    A compiled step (``compile`` other than "none") runs without module labels: its
    compiled code does not run module hooks (torch 2.14 neither calls hooks added after
    compiling nor compiles again for them), so nothing it runs has a module path. Its
    fused kernels (Inductor's generated C++ or Triton code) carry no aten operator name
    either: their self time, and that of the compiled graph's call holding them, is
    ``unattributed_s``; the aten operators it still calls (library matmuls, the fused
    attention) are classified by name alone; and ``unattributed`` says why the step
    cannot be split into operator classes.
    """
    from torch.profiler import ProfilerActivity, profile

    compiled = compile not in ("none", False, None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    labels = contextlib.nullcontext() if compiled else module_labels(model)
    with quiet_profiler_logs():  # the events are parsed here too: their warnings are noise of the same kind
        with labels, profile(activities=activities, profile_memory=True) as prof:
            step()
        out = _summarise(prof, device)
    if compiled:
        clock = "device" if device == "cuda" else "cpu"
        fused = out.unattributed_device_s if device == "cuda" else out.unattributed_cpu_s
        named = sum((out.device_s if device == "cuda" else out.cpu_s).values())
        share = fused / (fused + named) if fused + named > 0 else 0.0
        why = (
            f"torch.compile ({compile}): {share:.0%} of the profiled {clock} time is in fused kernels without an "
            "operator name, and compiled code calls its matmuls outside any module, so the step cannot be split "
            "into operator classes"
        )
        out = dataclasses.replace(out, unattributed=why)
    return out


def _summarise(prof, device: str) -> StepProfile:
    cpu: dict[str, float] = defaultdict(float)
    dev: dict[str, float] = defaultdict(float)
    attention_ops: dict[str, int] = defaultdict(int)
    # CPU-side events that are neither aten operators nor module labels (compiled steps: the fused kernels,
    # or the compiled graph's call holding them), with the device time of what they launched
    other_cpu = other_device = 0.0
    for event in prof.events():
        if not event.name.startswith("aten::"):
            if not event.name.startswith((LABEL, "[memory]")) and str(event.device_type).endswith("CPU"):
                other_cpu += event.self_cpu_time_total * US
                other_device += _self_device_us(event) * US if device == "cuda" else 0.0
            continue
        top, path = _owner(event)
        cls = classify(top, path)
        cpu[cls] += event.self_cpu_time_total * US
        if device == "cuda":
            dev[cls] += _self_device_us(event) * US
        if classify(event.name, path) == "attention" or op_name(event.name) in SDPA_KERNELS:
            attention_ops[op_name(event.name)] += 1
    return StepProfile(
        tensor_peak_bytes=tensor_peak(prof, device),
        cpu_s={c: cpu.get(c, 0.0) for c in CLASSES},
        device_s={c: dev.get(c, 0.0) for c in CLASSES} if device == "cuda" else {},
        attention_kernel=attention_kernel(attention_ops),
        unattributed_cpu_s=other_cpu,
        unattributed_device_s=other_device,
    )


def tensor_peak(prof, device: str = "cpu") -> int | None:
    """The largest rise of live tensor bytes on ``device`` during the profiled step (profiler memory events).

    Tensors alive before the step (weights, the input) do not count; memory freed first
    (a training step drops the previous gradients) lowers the baseline the rise starts
    from, so a training step's gradients count. Like ``torch.cuda.max_memory_allocated``,
    it sees tensor bytes, not the pages or allocator slack that the process RSS holds.
    None when this torch's profiler does not expose the events.
    """
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:
        return None
    kind = "cuda" if device == "cuda" else "cpu"
    events = [
        e
        for e in events
        if getattr(e, "device_type", lambda: None)() is None or str(e.device_type()).lower().endswith(kind)
    ]
    events.sort(key=lambda e: e.start_ns())
    live = low = rise = 0
    for e in events:
        live += e.nbytes()
        low = min(low, live)
        rise = max(rise, live - low)
    return int(rise)


def attention_kernel(ops: dict[str, int]) -> str | None:
    """The attention kernel from the operator names seen in attention modules (see the module doc)."""
    if not ops:
        return None
    for name, kernel in SDPA_KERNELS.items():
        if name in ops and kernel != "math":
            return kernel
    if "_scaled_dot_product_attention_math" in ops or "scaled_dot_product_attention" in ops:
        return "math"
    return "explicit"


class _ClassWork(counting.MetaMode):
    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.work: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = counting.meta_kernel(func, args, kwargs)  # the counters' meta shortcuts: no Python reference kernels
        cls = classify(str(func.overloadpacket), self.stack[-1] if self.stack else "")
        rule = counting.RULES.get(func.overloadpacket)
        if rule is not None and rule.kind == "matmul":
            self.work[cls] += int(rule.fn(func, args, kwargs, out)[0])
        elif rule is not None and rule.kind == "norm":
            self.work[cls] += int(rule.fn(func, args, kwargs, out))
        elif cls != "data_movement":
            first = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(first, torch.Tensor):
                self.work[cls] += first.numel()
        return out


def class_work(case: Case) -> dict[str, int]:
    """Work per operator class of one batch-1 forward pass of ``case``'s model (its size, patch and overrides;
    batch, device, dtype and mode do not matter), counted on the meta device (module doc)."""
    img_size = case.img_size
    net = counting.build(case)
    stack: list[str] = []
    handles = []

    def leave(module, args, output):
        stack.pop()

    for name, module in net.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(lambda m, a, name=name: stack.append(name)))
            handles.append(module.register_forward_hook(leave))
    mode = _ClassWork(stack)
    try:
        with torch.no_grad(), mode:
            net(counting.example_input(net, img_size, "meta"))
    finally:
        for h in handles:
            h.remove()
    return {c: int(mode.work.get(c, 0)) for c in CLASSES}
