"""Calibration and validation of the step-time model (:mod:`bench.analysis.predict`) on public measured data.

The data (nothing else is fitted on):

- timm's published inference tables (``bench/data/timm/``: RTX 3090, torch 2.4; RTX 4090, torch
  2.9.1; float16 autocast, batch 1024 mostly), the rows of :data:`TIMM_MODELS` only;
- the project's own H200 folders (``results/h200-*``: bfloat16 autocast, batch 32 mostly; read
  with :func:`bench.schema.read_results`), every ok record.

The fit: for each device class, the four constants of :class:`bench.schema.DeviceClass` that
minimise the sum of squared log errors ``log(predicted / measured)`` over that class's
measurements, by coordinate descent over a log-spaced grid per constant (narrowed around the best
value after every sweep): no black box, and the same answer every time. A class without a measurement (leave-one-device-out
with the only device of its class left out) takes the constants fitted on every other device.

Errors are ``|predicted / measured - 1|``, reported as the median and the 90th percentile per
device and per family, for the calibration (fitted on everything) and for leave-one-device-out
(each device predicted with constants fitted without it).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from bench import schema
from bench.analysis import predict
from bench.schema import Case, DeviceClass, DeviceFile

# The timm tables shipped with mixerbench: device -> file in bench/data/timm.
TIMM_TABLES = {
    "rtx-3090": "benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv",
    "rtx-4090": "benchmark-infer-amp-nchw-pt291-cu128-4090.csv",
}
# The rows used: every family of the project and its peers, small enough to count in seconds.
TIMM_MODELS = (
    "mixer_s16_224",
    "mixer_b16_224",
    "mixer_l16_224",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_large_patch16_224",
    "vit_base_patch16_384",
    "vit_base_patch32_224",
    "deit_small_patch16_224",
    "resnet18",
    "resnet50",
    "resnet101",
    "resmlp_12_224",
    "resmlp_24_224",
    "gmlp_s16_224",
    "convnext_tiny",
    "swin_tiny_patch4_window7_224",
    "beit_base_patch16_224",
)
H200_FOLDERS = ("h200-paper", "h200-paper-train", "h200-max-batch", "h200-oom")
RESULTS = Path(__file__).resolve().parents[2] / "results"  # the repository's results folder (a checkout)
FAMILIES = (("mixer", "mixer"), ("vit", "vit"), ("deit", "vit"), ("resnet", "resnet"))
ORDER_MODELS = {"mixer": ("mixer_b16", "timm:mixer_b16_224"), "vit": ("vit_b16", "timm:vit_base_patch16_224")}
ORDER_MODELS["resnet"] = ("resnet50", "timm:resnet50")
CONSTANTS = (
    "matmul_efficiency",
    "conv_efficiency",
    "attention_efficiency",
    "bandwidth_efficiency",
    "launch_s",
    "tile_overhead_k",
    "crossed_bandwidth_efficiency",
)
# The range each constant is searched in (efficiencies: fractions of a peak; launch_s: seconds).
RANGES = {
    "matmul_efficiency": (0.1, 1.0),
    "conv_efficiency": (0.1, 1.0),
    "attention_efficiency": (0.05, 1.0),
    "bandwidth_efficiency": (0.2, 1.0),
    "launch_s": (1e-6, 1e-4),
    "tile_overhead_k": (1.0, 512.0),
    "crossed_bandwidth_efficiency": (0.05, 1.0),
}
SEARCH_POINTS = 25  # values tried per constant and sweep, log-spaced
SEARCH_SWEEPS = 8  # sweeps over the constants; each narrows the range around the best value by half


@dataclass(frozen=True)
class Measured:
    """One measured step: a case on a device, its measured step time, and where the number comes from."""

    gpu: str
    case: Case
    step_s: float
    source: str

    @property
    def family(self) -> str:
        return family_of(self.case.model)


def family_of(model: str) -> str:
    """ "mixer", "vit" (ViT and DeiT), "resnet", or "peer" for every other model."""
    name = model.removeprefix("timm:")
    return next((family for prefix, family in FAMILIES if name.startswith(prefix)), "peer")


def timm_measurements(models: Sequence[str] = TIMM_MODELS) -> list[Measured]:
    """The rows of the shipped timm tables for ``models``: float16 autocast, eager, at the row's size and batch."""
    out = []
    folder = resources.files("bench").joinpath("data").joinpath("timm")
    for gpu, name in TIMM_TABLES.items():
        for row in csv.DictReader(folder.joinpath(name).read_text(encoding="utf-8").splitlines()):
            if row["model"] not in models:
                continue
            batch = int(row["infer_batch_size"])
            case = Case(f"timm:{row['model']}", int(row["infer_img_size"]), batch=batch, device="cuda", dtype="float16")
            out.append(Measured(gpu, case, batch / float(row["infer_samples_per_sec"]), f"timm {name}"))
    return out


def h200_measurements(results: Path = RESULTS) -> list[Measured]:
    """Every ok record of the H200 folders (``results/h200-*``) with its median step time; [] without them."""
    out = []
    for folder in H200_FOLDERS:
        path = results / folder / schema.RESULTS_FILENAME
        if not path.is_file():
            continue
        records, _problems = schema.read_results(path)
        for r in records:
            if r.status != "ok" or r.time is None or r.case.compile != "none":
                continue
            case = r.case.replace(batch=r.batch) if r.case.batch == "max" and r.batch else r.case
            if case.batch == "max":
                continue
            out.append(Measured("h200", case, r.time.median_s, f"results/{folder}"))
    return out


def measurements(results: Path = RESULTS) -> list[Measured]:
    """All the calibration data: timm's tables and the H200 folders."""
    return timm_measurements() + h200_measurements(results)


# -- pricing many cases at once --------------------------------------------------------------------------


@dataclass(frozen=True)
class Priced:
    """The kernels of every measurement as flat arrays, ready for :func:`bench.analysis.predict.seconds`."""

    data: tuple[Measured, ...]
    case: np.ndarray  # index into data of each kernel
    calls: np.ndarray
    kind: np.ndarray
    compute: np.ndarray
    memory: np.ndarray
    inner: np.ndarray  # K of each GEMM kernel, 0 for the others

    @property
    def adder(self) -> np.ndarray:
        """kernels x measurements: a kernel's calls in its measurement's column (t @ adder sums a step)."""
        out = np.zeros((len(self.case), len(self.data)))
        out[np.arange(len(self.case)), self.case] = self.calls
        return out

    def steps(self, c: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """Predicted step seconds per measurement (``c``: the constants, scalars or arrays of one value per
        measurement's kernels, e.g. by device class)."""
        t = predict.seconds(self.kind, self.compute, self.memory, self.inner, *(c[name] for name in CONSTANTS))
        return np.bincount(self.case, weights=self.calls * t, minlength=len(self.data))


def price(data: Iterable[Measured], devices: dict[str, schema.Device]) -> Priced:
    """Count every measured case (cached in memory) and split each kernel into its terms on its device."""
    data = tuple(data)
    rows = []
    for i, m in enumerate(data):
        device = devices[m.gpu]
        for kernel in predict.shaped_kernels(predict.counted(m.case)):
            rows.append((i, kernel[5], *predict.kernel_terms(kernel, device)))
    a = np.array(rows, dtype=float).T
    return Priced(data, a[0].astype(int), a[1], a[2].astype(int), a[3], a[4], a[5])


def fit(priced: Priced, note: str = "") -> DeviceClass:
    """The constants minimising the sum of squared log errors over ``priced``: coordinate descent, one constant
    at a time over a log-spaced grid in its range (:data:`RANGES`), the grid narrowed around the best value
    after every sweep (the module doc)."""
    measured = np.log([m.step_s for m in priced.data])
    adder = priced.adder
    log_range = {name: (np.log(lo), np.log(hi)) for name, (lo, hi) in RANGES.items()}
    best = {name: (lo + hi) / 2 for name, (lo, hi) in log_range.items()}  # log values
    width = {name: hi - lo for name, (lo, hi) in log_range.items()}
    for _ in range(SEARCH_SWEEPS):
        for name in CONSTANTS:
            lo = max(log_range[name][0], best[name] - width[name] / 2)
            hi = min(log_range[name][1], best[name] + width[name] / 2)
            trial = np.linspace(lo, hi, SEARCH_POINTS)
            values = {n: np.exp(trial if n == name else np.full(SEARCH_POINTS, best[n])) for n in CONSTANTS}
            t = predict.seconds(
                priced.kind[None, :],
                priced.compute[None, :],
                priced.memory[None, :],
                priced.inner[None, :],
                *(values[n][:, None] for n in CONSTANTS),
            )
            loss = ((np.log(t @ adder) - measured[None, :]) ** 2).sum(axis=1)
            best[name] = float(trial[int(np.argmin(loss))])
        width = {name: w / 2 for name, w in width.items()}
    return DeviceClass(note=note, **{n: float(f"{np.exp(v):.4g}") for n, v in best.items()})


def subset(priced: Priced, gpus: Collection[str]) -> Priced:
    """The measurements on ``gpus``, with their kernels."""
    return select(priced, lambda m: m.gpu in gpus)


def select(priced: Priced, keep: Callable[[Measured], bool]) -> Priced:
    """The measurements for which ``keep`` holds, with their kernels."""
    chosen = [i for i, m in enumerate(priced.data) if keep(m)]
    index = {old: new for new, old in enumerate(chosen)}
    mask = np.isin(priced.case, chosen)
    return Priced(
        tuple(priced.data[i] for i in chosen),
        np.array([index[i] for i in priced.case[mask]], dtype=int),
        priced.calls[mask],
        priced.kind[mask],
        priced.compute[mask],
        priced.memory[mask],
        priced.inner[mask],
    )


def calibrate(priced: Priced, devices: dict[str, schema.Device], note: str = "") -> dict[str, DeviceClass]:
    """Constants per device class fitted on that class's measurements in ``priced``; a class of the table
    without any takes the constants fitted on all of ``priced`` (under "*")."""
    pooled = fit(priced, note)
    out = {"*": pooled}
    for cls in sorted({d.device_class for d in devices.values()}):
        own = subset(priced, [g for g, d in devices.items() if d.device_class == cls])
        out[cls] = fit(own, note) if own.data else pooled
    return out


def predicted_steps(priced: Priced, devices: dict[str, schema.Device], classes: dict[str, DeviceClass]) -> np.ndarray:
    """Predicted step seconds of every measurement with its device class's constants."""
    per_kernel = {
        name: np.array([getattr(classes[devices[priced.data[i].gpu].device_class], name) for i in priced.case])
        for name in CONSTANTS
    }
    return priced.steps(per_kernel)


@dataclass(frozen=True)
class Validation:
    """Predicted against measured for every measurement: fitted on everything, and leave-one-device-out."""

    priced: Priced
    calibrated: dict[str, DeviceClass]
    calibration_s: np.ndarray  # predicted with the constants fitted on everything
    held_out_s: np.ndarray  # predicted with the constants fitted without the measurement's device

    @property
    def measured_s(self) -> np.ndarray:
        return np.array([m.step_s for m in self.priced.data])


def validate(data: Sequence[Measured] | None = None, table: DeviceFile | None = None) -> Validation:
    """Calibrate on ``data`` (default :func:`measurements`) and predict each device left out."""
    table = table or predict.builtin_table()
    priced = price(data if data is not None else measurements(), table.devices)
    calibrated = calibrate(priced, table.devices, "mixerbench predict --validate")
    calibration_s = predicted_steps(priced, table.devices, calibrated)
    held_out_s = np.zeros(len(priced.data))
    for gpu in sorted({m.gpu for m in priced.data}):
        rest = subset(priced, [g for g in table.devices if g != gpu])
        constants = calibrate(rest, table.devices)
        mine = np.array([m.gpu == gpu for m in priced.data])
        held_out_s[mine] = predicted_steps(priced, table.devices, constants)[mine]
    return Validation(priced, calibrated, calibration_s, held_out_s)


# -- the tables -------------------------------------------------------------------------------------------


def _errors(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(predicted / measured - 1)


def error_rows(v: Validation) -> list[tuple[str, int, float, float, float, float]]:
    """(group, n, calibration median, calibration p90, leave-one-device-out median, p90) per device, per family
    and over everything."""
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(v.priced.data):
        groups.setdefault(f"device {m.gpu}", []).append(i)
    for i, m in enumerate(v.priced.data):
        groups.setdefault(f"family {m.family}", []).append(i)
    groups["all"] = list(range(len(v.priced.data)))
    rows = []
    measured = v.measured_s
    for name, index in groups.items():
        cal = _errors(v.calibration_s[index], measured[index])
        loo = _errors(v.held_out_s[index], measured[index])
        rows.append(
            (
                name,
                len(index),
                float(np.median(cal)),
                float(np.percentile(cal, 90)),
                float(np.median(loo)),
                float(np.percentile(loo, 90)),
            )
        )
    return rows


def order_checks(v: Validation) -> list[tuple[str, int, str, str, str, str]]:
    """(device, resolution, mode, measured order, calibrated order, leave-one-device-out order) of Mixer-B/16,
    ViT-B/16 (fused attention where both were measured) and ResNet-50, wherever all three were measured in
    the same setting (device, batch, dtype, mode)."""
    found: dict[tuple, dict[str, int]] = {}
    for i, m in enumerate(v.priced.data):
        c = m.case
        if c.attention == "explicit":
            continue
        for family, names in ORDER_MODELS.items():
            if c.model in names:
                found.setdefault((m.gpu, c.img_size, c.batch, c.dtype, c.mode), {})[family] = i
    out = []
    for (gpu, size, _batch, _dtype, mode), index in sorted(found.items()):
        if len(index) != len(ORDER_MODELS):
            continue

        def order(times: np.ndarray, index: dict[str, int] = index) -> str:
            return " < ".join(sorted(index, key=lambda f: times[index[f]]))

        out.append((gpu, size, mode, order(v.measured_s), order(v.calibration_s), order(v.held_out_s)))
    return out


def summary(v: Validation) -> str:
    """One line: the leave-one-device-out median |predicted / measured - 1| per device, and the calibrated one."""
    parts = []
    for gpu in sorted({m.gpu for m in v.priced.data}):
        mine = np.array([m.gpu == gpu for m in v.priced.data])
        loo = np.median(_errors(v.held_out_s[mine], v.measured_s[mine]))
        cal = np.median(_errors(v.calibration_s[mine], v.measured_s[mine]))
        parts.append(f"{gpu} {loo:.0%} (calibrated {cal:.0%})")
    return (
        "median |predicted/measured - 1| left out of the fit (leave-one-device-out): "
        + ", ".join(parts)
        + "; `mixerbench predict --validate`"
    )


def validation_report(table: DeviceFile) -> str:
    """:func:`report` of :func:`validate` on the shipped data with ``table``'s devices."""
    return report(validate(table=table))


def report(v: Validation) -> str:
    """The calibration and leave-one-device-out error tables, the order checks and the fitted constants
    (Markdown)."""
    lines = [
        "| data | n | calibration median | calibration p90 | leave-one-device-out median | leave-one-device-out p90 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {g} | {n} | {a:.1%} | {b:.1%} | {c:.1%} | {d:.1%} |" for g, n, a, b, c, d in error_rows(v)]
    lines += [
        "",
        "| device | px | mode | measured order | calibrated | leave-one-device-out |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    lines += [f"| {g} | {s} | {m} | {a} | {b} | {c} |" for g, s, m, a, b, c in order_checks(v)]
    lines += ["", "| class | " + " | ".join(CONSTANTS) + " |", "| --- |" + " ---: |" * len(CONSTANTS)]
    for cls, c in v.calibrated.items():
        lines.append(f"| {cls} | " + " | ".join(f"{getattr(c, name):.4g}" for name in CONSTANTS) + " |")
    lines += ["", summary(v)]
    return "\n".join(lines)


def calibrated(table: DeviceFile, v: Validation) -> DeviceFile:
    """``table`` with every class's constants replaced by those fitted in ``v`` (the CPU class kept: its roofs
    are measured by the sweep itself) and its validation line by :func:`summary`'s."""
    note = "fitted by python tools/calibrate_predict.py"
    classes = {
        name: dataclasses.replace(v.calibrated[name], note=note) if name in v.calibrated else c
        for name, c in table.classes.items()
    }
    return DeviceFile(format=table.format, devices=table.devices, classes=classes, validation=summary(v))
