"""The calibrated model's prediction of each measured GPU case, for the report; and its check on CPU cases.

:func:`predict_records` predicts every ok CUDA record whose GPU is in the device table
(``bench/data/devices.json``, matched by the name torch reports, :func:`gpu_key`) with
:func:`bench.analysis.predict.predict_case`: the case is counted on the meta device as CUDA
runs it (about a second a case), which the report itself never does; ``mixerbench report``
and ``mixerbench sweep`` call it and hand the predictions to :func:`bench.report.build`.

:func:`validate_cpu` predicts measured CPU cases with a CPU device built from other records'
measured roofs (:func:`bench.analysis.predict.cpu_device`): the model's error on cases its
calibration never saw (``results/cpu-predict-validation``, docs/methodology/roofline.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.schema import Record, StepPrediction
from bench.text import markdown as md

# The name torch reports (torch.cuda.get_device_name, the records' env.device_name) -> the device table's key.
# Exact names only: a variant with other clocks or memory (H100 PCIe, A100 40GB, a laptop GPU) is not guessed.
TORCH_NAMES = {
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA H200": "h200",
    "NVIDIA A100-SXM4-80GB": "a100-80gb",
    "NVIDIA L4": "l4",
    "NVIDIA L40S": "l40s",
    "NVIDIA GeForce RTX 3090": "rtx-3090",
    "NVIDIA GeForce RTX 4090": "rtx-4090",
    "NVIDIA GeForce RTX 5090": "rtx-5090",
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition": "rtx-pro-6000-max-q",
}

PredictionKey = tuple[str, str]  # (case key at the batch that ran, the GPU's name as torch reports it)


def gpu_key(device_name: str | None) -> str | None:
    """The device table's key for a GPU named as torch names it, or None for a GPU the table does not hold."""
    return TORCH_NAMES.get(" ".join((device_name or "").split()))


def gpu_name(record: Record) -> str | None:
    """The GPU a CUDA record ran on, as torch named it (None for a CPU record or one without an environment)."""
    if not record.case.device.startswith("cuda") or record.env is None:
        return None
    return record.env.device_name or None


def prediction_key(record: Record) -> PredictionKey:
    """How :func:`predict_records` files the prediction of ``record`` (its case at the batch that ran, its GPU)."""
    return record.case.replace(batch=record.batch or record.case.batch).key, gpu_name(record) or ""


def predictable(record: Record) -> bool:
    """An ok, timed, eager CUDA record on a GPU of the device table (the model prices eager kernels: a compiled
    step fuses them)."""
    return (
        record.status == "ok"
        and record.time is not None
        and record.case.compile == "none"
        and gpu_key(gpu_name(record)) is not None
    )


def predict_records(records: Iterable[Record]) -> dict[PredictionKey, StepPrediction]:
    """The calibrated prediction of every :func:`predictable` record, by :func:`prediction_key` (each case once)."""
    from bench.analysis import predict

    found: dict[PredictionKey, StepPrediction] = {}
    for r in records:
        key = prediction_key(r)
        if predictable(r) and key not in found:
            gpu = gpu_key(gpu_name(r))
            assert gpu is not None  # predictable
            found[key] = predict.predict_case(r.case.replace(batch=r.batch or r.case.batch), gpu)
    return found


# -- the CPU check -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """One measured case and its prediction."""

    record: Record
    predicted_s: float

    @property
    def measured_s(self) -> float:
        assert self.record.time is not None
        return self.record.time.median_s

    @property
    def error(self) -> float:
        """predicted / measured - 1."""
        return self.predicted_s / self.measured_s - 1


@dataclass(frozen=True)
class Validation:
    """Measured CPU cases predicted by a CPU device built from other records' roofs."""

    device: str  # the CPU device's name (its model)
    roof_flops_per_s: float  # the float32 matmul roof it was given
    bandwidth: float  # the copy bandwidth it was given, bytes/s
    rows: tuple[Checked, ...]

    @property
    def median_abs_error(self) -> float:
        return statistics.median(abs(row.error) for row in self.rows)


def validate_cpu(measured: Iterable[Record], calibration: Iterable[Record]) -> Validation:
    """Predict each ok CPU record of ``measured`` on the CPU device of ``calibration`` (its records' measured
    roofs, the shipped CPU constants), with the case counted on the meta device as the CPU runs it.
    ValueError when ``calibration`` has no roofs or ``measured`` no ok CPU record."""
    from bench.analysis import predict

    device = predict.cpu_device(calibration)
    rows = tuple(
        Checked(r, predict.predict_case(r.case.replace(batch=r.batch or r.case.batch), "cpu", {"cpu": device}).step_s)
        for r in measured
        if r.status == "ok" and r.time is not None and r.case.device == "cpu"
    )
    if not rows:
        raise ValueError("no ok CPU record to validate")
    return Validation(device.name, device.flops["float32"], device.bandwidth, rows)


def validation_table(v: Validation) -> str:
    """The CPU check as Markdown: one line per case (predicted, measured, error), the median |error| under it."""
    lines = [
        f"CPU device from the calibration records' roofs: {md(v.device)}, float32 matmul roof "
        f"{v.roof_flops_per_s / 1e9:.1f} GFLOP/s, copy bandwidth {v.bandwidth / 1e9:.1f} GB/s.",
        "",
        "| case | px | batch | threads | measured ms | predicted ms | predicted / measured - 1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in v.rows:
        c = row.record.case
        lines.append(
            f"| {md(row.record.name)} | {c.img_size} | {row.record.batch} | {c.threads or '-'} | "
            f"{row.measured_s * 1e3:,.1f} | {row.predicted_s * 1e3:,.1f} | {row.error:+.0%} |"
        )
    lines += ["", f"Median |predicted / measured - 1| over {len(v.rows)} cases: {v.median_abs_error:.0%}."]
    return "\n".join(lines)


def validate_cpu_folders(measured: Path, calibration: Iterable[Path]) -> Validation:
    """:func:`validate_cpu` of the records of folder ``measured`` against those of the ``calibration`` folders
    (each holding a results.jsonl). ValueError (one line) for a folder without records, or cases shared by the two."""
    from bench.schema import RESULTS_FILENAME, read_results

    def read(folder: Path) -> list[Record]:
        found, _problems = read_results(folder / RESULTS_FILENAME)
        if not found:
            raise ValueError(f"{folder / RESULTS_FILENAME}: no valid record")
        return found

    checked = read(measured)
    seen = [r for folder in calibration for r in read(folder)]
    shared = {r.case.key for r in checked} & {r.case.key for r in seen}
    if shared:
        raise ValueError(f"{len(shared)} case(s) are in both the measured and the calibration records")
    return validate_cpu(checked, seen)
