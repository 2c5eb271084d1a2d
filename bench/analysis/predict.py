"""Predicted step time, throughput and peak memory of a case on any device, from its counted cost.

The step a sweep measures is priced kernel by kernel from what :func:`bench.measure.cost.cost`
counts on the meta device (``Cost.shaped``: every distinct kernel's class, dtype, FLOPs, bytes
moved, calls and, for matrix products, its GEMM shape), with a device's published peak numbers
(``bench/data/devices.json``, :class:`bench.schema.Device`) and four calibrated constants per
class of devices (:class:`bench.schema.DeviceClass`). Each kernel takes

    max(launch_s, compute_s, memory_s)

- ``memory_s = bytes moved / (bandwidth x bandwidth_efficiency)``;
- ``compute_s`` of a matrix product (a matmul, or a convolution as its implicit GEMM): its output
  is cut in :data:`TILE` tiles (a partial tile costs a whole one), one SM computes one tile at a
  time at its share of the peak of the kernel's dtype, so the kernel takes ``waves = ceil(tiles /
  SMs)`` times one tile's time (one wave when the tiles fill the SMs exactly, two with one tile
  more), divided by ``matmul_efficiency`` (``conv_efficiency`` for a convolution) and times
  ``(K + tile_overhead_k) / K``: a tile's fixed cost (loading, epilogue) weighs more on a short
  inner dimension K;
- fused attention (SDPA flash / memory-efficient) is priced as its kernel works: its FLOPs at
  ``attention_efficiency`` with one tile per :data:`ATTENTION_TILE` query rows of one head, and
  only the bytes it moves (Q, K, V, O; ``cost`` counts nothing S x S for it); explicit attention is
  the matmuls and the softmax it runs, with their S x S traffic;
- every other operator (norms, elementwise, copies; depthwise convolutions, which are not GEMMs)
  at the non-tensor float32 peak or at its memory time, whichever is larger;
- ``launch_s``: the least time a kernel takes in an eager step (launch and the framework's
  dispatch of one operator): a step of many small kernels is ``kernels x launch_s``.

The dtype of each matmul is the one autocast gives it (``Cost.shaped``); a float32 convolution
runs at the TF32 peak (cuDNN's default in torch), a float32 matmul at the float32 peak (torch's
default ``allow_tf32 = False`` for matmuls).

Peak memory: weights and buffers + the input batch + the counted peak of live activations
(``peak_activation_bytes``; training: ``peak_step_bytes``, gradients included) +
:data:`WORKSPACE_BYTES`; it fits when that plus :data:`RESERVE_BYTES` (the CUDA context, outside the
allocator) is within the device's memory.

Everything here is arithmetic over a :class:`~bench.schema.Cost` and a
:class:`~bench.schema.Device`, except :func:`predict_case`, which counts the case's cost first
(cached in memory per case).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import numpy as np

from bench import schema
from bench.schema import Case, Cost, Device, DeviceClass, DeviceFile, ShapedKernel, StepPrediction
from bench.text import markdown as md

TILE = (
    128,
    128,
)  # the output tile (rows x columns) one SM computes at a time in a GEMM (cuBLAS/CUTLASS's common 128 x 128)
ATTENTION_TILE = 128  # query rows of one head per thread block in flash attention (FlashAttention-2's block size)
DEPTHWISE_COLUMNS = 8  # a grouped convolution with fewer output channels per group is not a GEMM (depthwise)
WORKSPACE_BYTES = 32 * 2**20  # cuBLAS's workspace on Hopper (32 MiB), held beside the activations
RESERVE_BYTES = 2**30  # the CUDA context and library handles, outside torch's allocator (about 0.5-1 GiB)
ATTENTION_OPS = frozenset(
    (
        "aten::_scaled_dot_product_flash_attention",
        "aten::_scaled_dot_product_efficient_attention",
        "aten::_scaled_dot_product_cudnn_attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_backward",
        "aten::_scaled_dot_product_efficient_attention_backward",
        "aten::_scaled_dot_product_cudnn_attention_backward",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    )
)
CONVOLUTION_OPS = frozenset(("aten::convolution", "aten::convolution_backward"))
DEVICES_DATA = "devices.json"


# -- the device table ---------------------------------------------------------------------------------


def read_device_file(path: str | Path) -> DeviceFile:
    """A device table from ``path``; ValueError in one line naming the file on anything wrong."""
    path = Path(path)
    try:  # bounded: read up to MAX_LINE_BYTES + 1 bytes, nesting checked before json recurses
        with open(path, "rb") as f:
            raw = f.read(schema.MAX_LINE_BYTES + 1)
        text = raw.decode("utf-8")
        if len(raw) > schema.MAX_LINE_BYTES:
            raise ValueError(f"{path}: larger than {schema.MAX_LINE_BYTES} bytes")
        schema.check_nesting(text)
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:
        raise ValueError(exc if str(path) in str(exc) else f"{path}: {exc}") from None
    try:
        return schema.decode_object(DeviceFile, data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def builtin_table() -> DeviceFile:
    """The device table shipped with mixerbench (``bench/data/devices.json``)."""
    data = json.loads(resources.files("bench").joinpath("data").joinpath(DEVICES_DATA).read_text(encoding="utf-8"))
    return schema.decode_object(DeviceFile, data)


def load_table(extra: str | Path | None = None) -> DeviceFile:
    """The shipped table, with the devices and classes of the user's file ``extra`` added (a name given again
    replaces the shipped one). ValueError (one line) for a bad file or a device of an unknown class."""
    table = builtin_table()
    devices, classes = dict(table.devices), dict(table.classes)
    if extra is not None:
        user = read_device_file(extra)
        devices.update(user.devices)
        classes.update(user.classes)
        unknown = sorted({d.device_class for d in user.devices.values()} - set(classes))
        if unknown:
            raise ValueError(f"{extra}: unknown device class {unknown[0]!r} (known: {', '.join(sorted(classes))})")
    return DeviceFile(format=table.format, devices=devices, classes=classes, validation=table.validation)


def load_devices(extra: str | Path | None = None) -> dict[str, Device]:
    """Every device by name: the shipped table plus the user's file ``extra`` (see :func:`load_table`)."""
    return load_table(extra).devices


def cpu_device(records: Iterable[schema.Record], name: str = "cpu") -> Device:
    """A device for the CPU a sweep ran on, from its records' measured roofs (``roof_flops_per_s`` per dtype,
    ``copy_bytes_per_s``). ValueError when no record carries both."""
    roofs: dict[str, float] = {}
    bandwidths, cores, model = [], 0, ""
    for r in records:
        if r.case.device != "cpu" or not r.roof_flops_per_s:
            continue
        roofs[r.case.dtype] = max(roofs.get(r.case.dtype, 0.0), r.roof_flops_per_s)
        if r.copy_bytes_per_s:
            bandwidths.append(r.copy_bytes_per_s)
        if r.env is not None:
            cores = max(cores, r.env.torch_threads or r.env.cpu_count or 0)
            model = model or (r.env.cpu_model or "")
    if not roofs or not bandwidths:
        raise ValueError("no CPU record with a measured matmul roof and copy bandwidth")
    fp32 = roofs.get("float32", max(roofs.values()))
    flops = {d: roofs.get(d, fp32) for d in schema.PEAK_DTYPES}
    flops["tf32"] = fp32
    measured = "measured by the sweep (roof_flops_per_s per dtype; float32's where a dtype was not measured)"
    return Device(
        name=model or name,
        device_class="cpu",
        flops=flops,
        bandwidth=max(bandwidths),
        sms=max(cores, 1),
        boost_clock_hz=0.0,
        l2_bytes=0,
        memory_bytes=2**40,
        sources={
            "flops": measured,
            "bandwidth": "measured by the sweep (copy_bytes_per_s)",
            "sms": "the records' torch threads",
            "boost_clock_hz": "not used on a CPU",
            "l2_bytes": "not used on a CPU",
            "memory_bytes": "not modelled on a CPU",
        },
    )


# -- the model ------------------------------------------------------------------------------------------


def peak_of(device: Device, op: str, dtype: str) -> float:
    """The peak FLOP/s a matrix product of ``dtype`` runs at (float32 convolutions: TF32, as cuDNN's default)."""
    if dtype in ("float16", "bfloat16"):
        return device.flops[dtype]
    if op in CONVOLUTION_OPS:
        return device.flops["tf32"]
    return device.flops["float32"]


def tiles_of(op: str, gemm: tuple[int, ...]) -> tuple[int, int] | None:
    """(output tiles, output elements one tile covers) of a matrix product; None: not a GEMM (a depthwise
    convolution, an elementwise operator). Attention's tile is :data:`ATTENTION_TILE` query rows of one head."""
    if len(gemm) != 4:
        return None
    batch, m, n, _k = gemm
    if op in ATTENTION_OPS:
        return batch * math.ceil(m / ATTENTION_TILE), ATTENTION_TILE
    if op in CONVOLUTION_OPS and batch > 1 and n < DEPTHWISE_COLUMNS:
        return None
    return batch * math.ceil(m / TILE[0]) * math.ceil(n / TILE[1]), TILE[0] * TILE[1]


def wave_seconds(flops: int, gemm: tuple[int, ...], tiles: int, tile_area: int, peak: float, sms: int) -> float:
    """A GEMM's time at ``peak``: ``ceil(tiles / sms)`` waves, each as long as one whole tile on one SM (its
    share of the peak, ``peak / sms``); a partial tile costs a whole one. Attention's output "elements" are
    query rows (its tiles are rows of one head)."""
    batch, m, n, _k = gemm
    outputs = batch * m * (1 if tile_area == ATTENTION_TILE else n)
    tile_flops = flops / outputs * tile_area
    return math.ceil(tiles / sms) * tile_flops / (peak / sms)


# the kinds of kernel the model prices differently; CROSSED: not a GEMM, with a transposed operand
OTHER, MATMUL, CONVOLUTION, ATTENTION, CROSSED = 0, 1, 2, 3, 4


def kernel_terms(kernel: ShapedKernel, device: Device) -> tuple[int, float, float, int]:
    """(kind, compute seconds at 100% efficiency, memory seconds at the nominal bandwidth, K) of one call of
    ``kernel``: what :func:`seconds` combines with a class's constants. A GEMM's compute includes its wave
    factor, K is its inner dimension (attention: S_kv); an OTHER kernel's compute is its FLOPs at the float32
    peak (no efficiency applies) and its K is 0."""
    _cls, op, dtype, flops, nbytes, _calls, gemm, crossed = kernel
    memory = nbytes / device.bandwidth
    tiling = tiles_of(op, gemm)
    if tiling is None:
        return CROSSED if crossed else OTHER, flops / device.flops["float32"], memory, 0
    kind = ATTENTION if op in ATTENTION_OPS else CONVOLUTION if op in CONVOLUTION_OPS else MATMUL
    inner = gemm[2] if kind == ATTENTION else gemm[3]
    return kind, wave_seconds(flops, gemm, *tiling, peak_of(device, op, dtype), device.sms), memory, inner


def seconds(
    kind,
    compute,
    memory,
    inner,
    matmul_efficiency,
    conv_efficiency,
    attention_efficiency,
    bandwidth_efficiency,
    launch_s,
    tile_overhead_k,
    crossed_bandwidth_efficiency,
):
    """The model's one formula, for scalars or numpy arrays alike (the calibration prices many kernels at once):
    max(launch_s, compute / efficiency of its kind x (K + tile_overhead_k) / K, memory / bandwidth efficiency),
    the bandwidth efficiency being ``crossed_bandwidth_efficiency`` for a kernel with a transposed operand."""
    efficiency = np.select(
        [kind == MATMUL, kind == CONVOLUTION, kind == ATTENTION],
        [matmul_efficiency, conv_efficiency, attention_efficiency],
        1.0,
    )
    short_k = np.where(inner > 0, (inner + tile_overhead_k) / np.maximum(inner, 1), 1.0)
    bandwidth = np.where(kind == CROSSED, crossed_bandwidth_efficiency, bandwidth_efficiency)
    return np.maximum(np.maximum(compute / efficiency * short_k, memory / bandwidth), launch_s)


def kernel_seconds(kernel: ShapedKernel, device: Device, constants: DeviceClass) -> float:
    """The predicted seconds of one call of ``kernel`` on ``device`` (the module doc's formula)."""
    c = constants
    return float(
        seconds(
            *kernel_terms(kernel, device),
            c.matmul_efficiency,
            c.conv_efficiency,
            c.attention_efficiency,
            c.bandwidth_efficiency,
            c.launch_s,
            c.tile_overhead_k,
            c.crossed_bandwidth_efficiency,
        )
    )


def shaped_kernels(cost: Cost) -> tuple[ShapedKernel, ...]:
    """``cost.shaped``, or for a cost read from a record (no shapes) its kernels in the cost's dtype, unshaped."""
    if cost.shaped:
        return cost.shaped
    return tuple((c, op, cost.dtype, f, b, n, (), False) for c, op, f, b, n in cost.kernels)


def peak_bytes(cost: Cost) -> int:
    """Weights + input + the counted peak activations (training: with gradients) + :data:`WORKSPACE_BYTES`."""
    if cost.weight_bytes is None or cost.input_bytes is None:
        raise ValueError("the cost carries no weight or input bytes: count it with bench.measure.cost.cost")
    held = cost.peak_step_bytes if cost.mode == "train" else cost.peak_activation_bytes
    return cost.weight_bytes + cost.input_bytes + held + WORKSPACE_BYTES


def constants_for(device: Device, table: DeviceFile | None = None) -> DeviceClass:
    table = table or builtin_table()
    found = table.classes.get(device.device_class)
    if found is None:
        raise ValueError(f"device class {device.device_class!r} has no constants (known: {', '.join(table.classes)})")
    return found


def validated_error(table: DeviceFile | None = None) -> str:
    """The model's validated error, as the calibration wrote it into the device table."""
    return (table or builtin_table()).validation


def predict(
    cost: Cost,
    device: Device,
    constants: DeviceClass | None = None,
    *,
    gpu: str = "",
    case: Case | None = None,
    error: str | None = None,
) -> StepPrediction:
    """The predicted step of ``cost`` on ``device`` with the class ``constants`` (default: the shipped ones
    for the device's class). ``gpu``, ``case`` and ``error`` are carried into the prediction."""
    constants = constants or constants_for(device)
    by_class: dict[str, float] = {}
    for kernel in shaped_kernels(cost):
        by_class[kernel[0]] = by_class.get(kernel[0], 0.0) + kernel[5] * kernel_seconds(kernel, device, constants)
    step_s = sum(by_class.values())
    peak = peak_bytes(cost)
    return StepPrediction(
        gpu=gpu or device.name,
        step_ms=step_s * 1e3,
        images_per_s=cost.batch / step_s if step_s > 0 else 0.0,
        peak_bytes=peak,
        fits_in_memory=peak + RESERVE_BYTES <= device.memory_bytes,
        class_share={c: t / step_s for c, t in by_class.items()} if step_s > 0 else {},
        case=case,
        error=validated_error() if error is None else error,
    )


_COSTS: dict[str, Cost] = {}


def counted(case: Case, device: str = "cuda") -> Cost:
    """The cost of ``case`` as ``device`` runs it ("cuda": CUDA's autocast policy and fused attention kernels;
    "cpu": the CPU's), counted once per process and kept in memory."""
    from bench.measure.cost import cost

    if case.batch == "max":
        raise ValueError('batch "max" cannot be predicted: give a batch')
    case = case.replace(device=device)
    key = case.key
    if key not in _COSTS:
        _COSTS[key] = cost(case)
    return _COSTS[key]


def predict_case(
    case: Case,
    gpu: str,
    devices: dict[str, Device] | None = None,
    *,
    classes: dict[str, DeviceClass] | None = None,
) -> StepPrediction:
    """The predicted step of ``case`` on the device named ``gpu`` (``devices``: default :func:`load_devices`;
    ``classes``: the constants per device class, default the shipped ones, e.g. ``load_table(file).classes``).

    The case is counted as the device runs it (a GPU: "cuda"; a device of class "cpu": "cpu"), whatever its own
    ``device``; ValueError for an unknown device."""
    table = builtin_table()
    devices = devices if devices is not None else table.devices
    device = devices.get(gpu)
    if device is None:
        raise ValueError(f"unknown device {gpu!r} (known: {', '.join(sorted(devices))})")
    constants = constants_for(device, table if classes is None else DeviceFile(format=1, devices={}, classes=classes))
    runs_on = "cpu" if device.device_class == "cpu" else "cuda"
    return predict(counted(case, runs_on), device, constants, gpu=gpu, case=case, error=table.validation)


# -- tables -----------------------------------------------------------------------------------------------


def _si(value: float, unit: str) -> str:
    return f"{value / 1e12:,.1f} T{unit}" if value >= 1e12 else f"{value / 1e9:,.0f} G{unit}"


def devices_table(table: DeviceFile) -> str:
    """The devices as a Markdown table: peaks, bandwidth, SMs, clock, L2, memory and class."""
    rows = [
        "| device | name | class | float32 | tf32 | float16 | bfloat16 | bandwidth | SMs | boost | L2 | memory |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, d in table.devices.items():
        peaks = " | ".join(_si(d.flops[t], "FLOP/s") for t in schema.PEAK_DTYPES)
        rows.append(
            f"| {md(key)} | {md(d.name)} | {md(d.device_class)} | {peaks} | {_si(d.bandwidth, 'B/s')} | {d.sms} | "
            f"{d.boost_clock_hz / 1e9:.2f} GHz | {d.l2_bytes / 2**20:.0f} MiB | {d.memory_bytes / 1e9:.0f} GB |"
        )
    return "\n".join(rows)


def predictions_table(predictions: Iterable[StepPrediction]) -> str:
    """PREDICTED steps as a Markdown table (one row per case and device), with the validated error under it."""
    predictions = list(predictions)
    rows = [
        "| model | px | patch | batch | dtype | mode | gpu | predicted ms | predicted img/s | predicted peak GiB "
        "| fits | attention share |",
        "| --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for p in predictions:
        c = p.case
        if c is None:
            continue
        rows.append(
            f"| {md(c.model)} | {c.img_size} | {c.patch_size or '-'} | {c.batch} | {c.dtype} | {c.mode} | {md(p.gpu)} "
            f"| {p.step_ms:,.2f} | {p.images_per_s:,.0f} | {p.peak_bytes / 2**30:,.2f} | "
            f"{'yes' if p.fits_in_memory else 'NO'} | {p.class_share.get(schema.ATTENTION, 0.0):.0%} |"
        )
    error = predictions[0].error if predictions else ""
    return "\n".join(rows) + f"\n\nPredicted, not measured. Validated error: {md(error)}"
