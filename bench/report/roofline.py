"""The roofline of every case: predicted step time from the deterministic cost, against the measured time.

Each operator the step runs (``Cost.kernels``: class, FLOPs, bytes moved, calls) is
priced at ``max(flops / roof, bytes / bandwidth)``: the matmul roof the sweep measured
(``roof_flops_per_s``, the case's dtype) and the copy bandwidth it measured
(``copy_bytes_per_s``). An operator is *compute-bound* when its FLOP time is the larger,
*memory-bound* otherwise; a class is marked by where most of its predicted time is.
The sum is a lower bound for an unfused, perfectly overlapped execution: measured /
predicted says how far the real kernels are from their roof (launch overhead, kernels
below the roof, the time the GPU sits idle between small kernels).

Only records that carry a cost are priced: the report never counts or re-costs. Records
written before the cost existed are given one by the runs layer before the report is built
(:func:`bench.runs.costs.fill_missing_costs`, called by ``mixerbench report``); any still
without one are counted in one line. A CUDA record without a measured copy bandwidth uses
the device's nominal bandwidth (H200: 4.8 TB/s), and the report says so.

On a GPU of the device table (``bench/data/devices.json``, matched by the name torch reports),
the section also shows the calibrated model's prediction of each case
(:mod:`bench.analysis.predict`, as ``mixerbench predict`` gives it) beside the measured time, with
its error, predicted / measured - 1; the per-class shares are then the calibrated model's. The
predictions are made by the runs layer (:func:`bench.runs.predictions.predict_records`) and handed
in: the report never counts. A GPU the table does not hold keeps the roofline alone, and the
section says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.measure.opclass import CLASSES
from bench.runs import predictions
from bench.schema import Cost, Kernel, Record, StepPrediction
from bench.text import markdown as md
from bench.text import mathtext

PLOT = "roofline.png"
COST_QUANTITIES = ("bytes_moved", "peak_activation_bytes", "ops")
# Nominal HBM bandwidth of GPUs by the name torch reports, bytes/s (vendor data sheets).
NOMINAL_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}


def measured_by_class(record: Record) -> dict[str, float] | None:
    """Measured seconds per step by operator class (``record.profile``: device time on CUDA, CPU self time
    otherwise), or None for records without a profile. Used for the per-class measured / predicted."""
    return dict(record.profile.class_s) if record.profile else None


@dataclass(frozen=True)
class ClassPrediction:
    """The predicted seconds of one operator class in one step, split by what bounds each of its operators."""

    predicted_s: float  # every operator of the class at max(FLOPs / roof, bytes / bandwidth)
    compute_bound_s: float  # the part of predicted_s from operators whose FLOP time is the larger
    memory_bound_s: float  # the part from operators whose memory time is the larger

    @property
    def bound(self) -> str:
        """ "compute" or "memory": what bounds most of the class's predicted time."""
        return "compute" if self.compute_bound_s >= self.memory_bound_s else "memory"


@dataclass(frozen=True)
class Prediction:
    """The predicted seconds of a step: in total and per operator class."""

    predicted_s: float
    by_class: dict[str, ClassPrediction]


@dataclass(frozen=True)
class RooflineRow:
    """One priced record: its cost, the bandwidth it was priced at, its measured and predicted time."""

    record: Record
    cost: Cost
    bandwidth: float  # copy bandwidth, bytes/s
    source: str  # where the bandwidth comes from: "measured" or "nominal <GPU>"
    measured_s: float  # the median step time
    profile: dict[str, float] | None  # measured seconds per class (measured_by_class), None without a profile
    roof: float  # the measured matmul roof it was priced at, FLOP/s
    prediction: Prediction  # the roofline: a lower bound
    calibrated: StepPrediction | None = None  # the calibrated model's, on a GPU of the device table

    @property
    def predicted_s(self) -> float:
        """The roofline's predicted seconds (a lower bound)."""
        return self.prediction.predicted_s

    @property
    def by_class(self) -> dict[str, ClassPrediction]:
        return self.prediction.by_class

    @property
    def error(self) -> float | None:
        """The calibrated prediction's error, predicted / measured - 1 (None without one)."""
        return self.calibrated.step_s / self.measured_s - 1 if self.calibrated else None

    def share(self, cls: str) -> float:
        """Class ``cls``'s share of the step: the calibrated model's where there is one, else the roofline's."""
        if self.calibrated:
            return self.calibrated.class_share.get(cls, 0.0)
        return self.by_class[cls].predicted_s / self.predicted_s

    def class_predicted_s(self, cls: str) -> float:
        """Predicted seconds of class ``cls``: calibrated where there is a calibrated prediction, else roofline."""
        if self.calibrated:
            return self.share(cls) * self.calibrated.step_s
        return self.by_class[cls].predicted_s


def predict(kernels: Sequence[Kernel], roof: float, bandwidth: float) -> Prediction:
    """Predicted seconds of a step: total and per class (compute part, memory part, bound)."""
    parts: dict[str, list[float]] = {}  # class -> [predicted, compute-bound, memory-bound] seconds, summed in order
    for cls, _op, flops, nbytes, calls in kernels:
        compute, memory = flops / roof, nbytes / bandwidth
        sums = parts.setdefault(cls, [0.0, 0.0, 0.0])
        sums[0] += calls * max(compute, memory)
        sums[1 if compute >= memory else 2] += calls * max(compute, memory)
    by_class = {cls: ClassPrediction(*sums) for cls, sums in parts.items()}
    return Prediction(sum(e.predicted_s for e in by_class.values()), by_class)


def bandwidth_of(record: Record) -> tuple[float | None, str]:
    """(copy bandwidth in bytes/s, where it comes from) for a record."""
    if record.copy_bytes_per_s:
        return record.copy_bytes_per_s, "measured"
    name = (record.env.device_name or "" if record.env else "") if record.case.device == "cuda" else ""
    for gpu, nominal in NOMINAL_BANDWIDTH.items():
        if gpu in name:
            return nominal, f"nominal {gpu}"
    return None, "unknown"


def without_cost(records: list[Record]) -> int:
    """How many records the roofline would price but that carry no cost (older than the cost, not filled)."""
    return sum(
        1
        for r in records
        if r.status == "ok" and r.roof_flops_per_s and r.cost is None and bandwidth_of(r)[0] is not None
    )


def rows_of(
    records: list[Record], calibrated: Mapping[predictions.PredictionKey, StepPrediction] | None = None
) -> list[RooflineRow]:
    """A row for every ok record with a measured roof, a cost and a known bandwidth; ``calibrated``: the
    calibrated predictions by :func:`bench.runs.predictions.prediction_key`, put beside the roofline."""
    calibrated = calibrated or {}
    rows = []
    for r in records:
        roof = r.roof_flops_per_s
        if r.status != "ok" or not roof:
            continue
        bandwidth, source = bandwidth_of(r)
        cost = r.cost
        if cost is None or not bandwidth or r.time is None:
            continue
        rows.append(
            RooflineRow(
                record=r,
                cost=cost,
                bandwidth=bandwidth,
                source=source,
                measured_s=r.time.median_s,
                profile=measured_by_class(r),
                roof=roof,
                prediction=predict(cost.kernels, roof, bandwidth),
                calibrated=calibrated.get(predictions.prediction_key(r)),
            )
        )
    return rows


def _case_name(r: Record) -> str:
    c = r.case
    attention = c.attention
    suffix = f" {attention}" if attention and attention not in r.name else ""
    return f"{r.name}{suffix} {c.mode}"


def _calibrated_cells(row: RooflineRow) -> str:
    """predicted ms | error | predicted peak GiB | measured peak GiB, for the calibrated columns."""
    p, memory = row.calibrated, row.record.memory
    if p is None:
        return "- | - | - | - | "
    measured_peak = f"{memory.peak_bytes / 2**30:.2f}" if memory else "-"
    return f"{p.step_ms:.2f} | {row.error:+.0%} | {p.peak_bytes / 2**30:.2f} | {measured_peak} | "


def table(rows: list[RooflineRow]) -> list[str]:
    """One line per case: measured and predicted time (the calibrated model's, where there is one, beside the
    roofline), MFU, and each class's share of the step and what bounds it."""
    classes = [c for c in CLASSES if any(c in row.by_class for row in rows)]
    calibrated = any(row.calibrated for row in rows)
    head = (
        "| case | px | S | batch | dtype | measured ms | "
        + ("predicted ms | predicted / measured - 1 | predicted peak GiB | measured peak GiB | " if calibrated else "")
        + ("roofline ms | measured / roofline" if calibrated else "predicted ms | measured / predicted")
        + " | MFU | "
        + " | ".join(f"{c}: share, bound" for c in classes)
        + " |"
    )
    align = "| --- | ---: | ---: | ---: | --- | ---: | " + "---: | " * (4 * calibrated) + "---: | ---: | ---: |"
    lines = [head, align + " --- |" * len(classes)]
    for row in rows:
        r = row.record
        cells = []
        for c in classes:
            e = row.by_class.get(c)
            if e is None:
                cells.append("-")
                continue
            cell = f"{row.share(c):.0%} {e.bound}"
            measured = (row.profile or {}).get(c)
            if measured and row.class_predicted_s(c) > 0:
                cell += f", measured/pred {measured / row.class_predicted_s(c):.1f}"
            cells.append(cell)
        lines.append(
            f"| {md(_case_name(r))} | {r.case.img_size} | {r.tokens or '-'} | {r.batch} | {md(r.case.dtype)} | "
            f"{row.measured_s * 1e3:.2f} | "
            + (_calibrated_cells(row) if calibrated else "")
            + f"{row.predicted_s * 1e3:.2f} | {row.measured_s / row.predicted_s:.2f} | {r.mfu:.0%} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def calibrated_summary(rows: list[RooflineRow]) -> list[str]:
    """One line per GPU: what the calibrated model predicted, its median absolute error and its validated error."""
    by_gpu: dict[str, list[RooflineRow]] = {}
    for row in rows:
        if row.calibrated:
            by_gpu.setdefault(row.calibrated.gpu, []).append(row)
    lines = []
    for gpu, group in by_gpu.items():
        errors = [abs(row.error or 0.0) for row in group]
        lines.append(
            f"- predicted on **{md(gpu)}** (the device table's entry for this GPU) by the calibrated model "
            f"(`mixerbench predict --gpu {md(gpu)}`): median |predicted / measured - 1| {statistics.median(errors):.0%} "
            f"over {len(group)} case{'s' * (len(group) != 1)}, largest {max(errors):.0%}; "
            f"the model's validated error: {md(group[0].calibrated.error or 'not stated')}"  # type: ignore[union-attr]
        )
    return lines


def unknown_gpus(records: list[Record]) -> list[str]:
    """One line per GPU of the records that the device table does not hold: the roofline alone stands there."""
    names = sorted({n for r in records if r.status == "ok" and (n := predictions.gpu_name(r)) is not None})
    return [
        f"- {md(name)}: not in the device table (`mixerbench predict --list-devices`), so no calibrated prediction; "
        "its rows show the roofline (a lower bound from the measured roofs) alone"
        for name in names
        if predictions.gpu_key(name) is None
    ]


def where_time_goes(rows: list[RooflineRow]) -> list[str]:
    """One sentence per model and mode at its largest size: the memory-bound share and how far it is from the roof."""
    last: dict[tuple, RooflineRow] = {}
    for row in rows:
        r = row.record
        key = (_case_name(r), r.case.dtype, r.batch)
        if key not in last or r.case.img_size > last[key].record.case.img_size:
            last[key] = row
    lines = []
    for row in last.values():
        r = row.record
        memory = sum(e.memory_bound_s for e in row.by_class.values()) / row.predicted_s
        parts = ", ".join(
            f"{c} {row.share(c):.0%} ({e.bound})"
            for c, e in sorted(row.by_class.items(), key=lambda kv: -row.share(kv[0]))
        )
        calibrated = (
            f"; predicted {row.calibrated.step_ms:.2f} ms by the calibrated model ({row.error:+.0%})"
            if row.calibrated
            else ""
        )
        lines.append(
            f"- **{md(_case_name(r))}** at {r.case.img_size} px: {memory:.0%} of the {'roofline' if row.calibrated else 'predicted'} time is memory-bound "
            f"({parts}); it runs at {row.measured_s / row.predicted_s:.2f}x its roofline time{calibrated}, "
            f"MFU {r.mfu:.0%}; {row.cost.ops} operators, {row.cost.bytes_moved / 1e9:.2f} GB moved per step."
        )
    return lines


def cost_fit_table(records: list[Record], rows: list[RooflineRow]) -> list[str]:
    """Exact two-term fits of bytes moved, peak activation bytes and operators per series (the MACs' verdict rule)."""
    from bench.analysis.scaling import fit
    from bench.analysis.series import series_of

    costs = {id(row.record): row.cost for row in rows}
    lines = ["| series | quantity | b | quadratic share at x_max | verdict |", "| --- | --- | ---: | ---: | --- |"]
    for s in series_of(records):
        got = [(x, costs.get(id(r))) for x, r in zip(s.x(), s.records)]
        got = [(x, c) for x, c in got if c is not None]
        if len({x for x, _ in got}) < 3:
            continue
        for quantity in COST_QUANTITIES:
            f = fit([x for x, _ in got], [getattr(c, quantity) for _, c in got], axis=s.axis)
            lines.append(f"| {md(s.title)} | {quantity} | {f.b:.4g} | {f.quadratic_share:.1%} | **{f.verdict}** |")
    return lines if len(lines) > 2 else []


def plot(out: Path, rows: list[RooflineRow]) -> str | None:
    """roofline.png: every case at its arithmetic intensity and measured FLOP/s, under its roofs."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bench.files import write_atomically

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    roofs: dict[tuple[str, str], tuple[float, float]] = {}
    series: dict[str, list[RooflineRow]] = {}
    for row in rows:
        r = row.record
        series.setdefault(f"{_case_name(r)} {r.case.dtype} b{r.batch}", []).append(row)
        roofs[(r.case.device, r.case.dtype)] = (row.roof, row.bandwidth)
    for label, group in series.items():  # one colour per model and mode, sizes joined in order
        group = sorted(group, key=lambda row: row.record.case.img_size)
        intensity = [row.cost.flops / row.cost.bytes_moved for row in group]
        line = ax.plot(
            intensity, [row.cost.flops / row.measured_s for row in group], "o-", ms=4, label=mathtext(label)
        )[0]
        ax.plot(
            intensity,
            [row.cost.flops / row.predicted_s for row in group],
            "x:",
            ms=4,
            color=line.get_color(),
            alpha=0.6,
        )
        calibrated = [(x, row.cost.flops / row.calibrated.step_s) for x, row in zip(intensity, group) if row.calibrated]
        if calibrated:  # the calibrated model's prediction, where the GPU is in the device table
            ax.plot(
                [x for x, _ in calibrated],
                [y for _, y in calibrated],
                "+",
                ms=7,
                color=line.get_color(),
            )
    grid = np.geomspace(0.5, 1e4, 200)
    for (device, dtype), (roof, bw) in roofs.items():
        ax.plot(grid, np.minimum(roof, bw * grid), "-", color="black", alpha=0.5)
        ax.text(grid[-1], roof, mathtext(f" {device} {dtype}"), fontsize=7, va="bottom", ha="right")
    ax.legend(fontsize=6, ncol=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity, FLOP per byte moved (log)")
    ax.set_ylabel(
        "FLOP/s: measured (dots), roofline (x)"
        + (", calibrated prediction (+)" if any(row.calibrated for row in rows) else "")
        + " (log)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("Roofline: each step's FLOPs and bytes (meta count) against the measured roofs")
    fig.tight_layout()
    write_atomically(out / PLOT, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return PLOT


def section(
    records: list[Record],
    out: Path,
    calibrated: Mapping[predictions.PredictionKey, StepPrediction] | None = None,
) -> tuple[list[str], list[str]]:
    """(markdown lines, plots written) of the roofline section for ``records``; ``calibrated``: the calibrated
    model's predictions of the GPU records (:func:`bench.runs.predictions.predict_records`), None: roofline only."""
    rows = rows_of(records, calibrated)
    missing = without_cost(records)
    no_cost = (
        [
            f"- {missing} record{'s' * (missing != 1)} carry no cost (written before the cost existed) and are "
            "left out of the roofline; `mixerbench report` counts their cost on meta"
        ]
        if missing
        else []
    )
    if not rows:
        return (["## Roofline: where the time goes", ""] + no_cost + [""], []) if missing else ([], [])
    sources = sorted({(row.record.case.device, row.source, row.bandwidth) for row in rows})
    md = [
        "## Roofline: where the time goes",
        "",
        "Each operator of the step (counted on meta: FLOPs and bytes moved) is priced at max(FLOPs / matmul roof, "
        "bytes / copy bandwidth); the prediction is their sum, a lower bound for unfused kernels. "
        "*share, bound*: a class's part of the predicted time and whether compute or memory bounds most of it. "
        "Elementwise operators are priced against the same matmul roof (they are memory-bound either way).",
        "",
    ]
    md += [f"- copy bandwidth {device}: {bw / 1e9:.0f} GB/s ({source})" for device, source, bw in sources]
    md += no_cost
    if any(row.calibrated for row in rows):
        md += [
            "- *predicted ms*: the calibrated model (docs/methodology/prediction.md), a PREDICTION from the counted "
            "cost and the device table, beside the measured time; *predicted / measured - 1* is its error on this "
            "case, and the class shares are its own; *roofline ms*: the lower bound above"
        ]
        md += calibrated_summary(rows)
    md += unknown_gpus(records)
    if any(row.source.startswith("nominal") for row in rows):
        md += [
            "- these records predate the measured copy bandwidth: the GPU's nominal bandwidth stands in "
            "(the measured one is typically 85-90% of it)"
        ]
    md += (
        [""]
        + table(rows)
        + ["", "### Where the time goes (largest size of each model)", ""]
        + where_time_goes(rows)
        + [""]
    )
    fits = cost_fit_table(records, rows)
    if fits:
        md += [
            "### Deterministic cost: cost = a*x + b*x^2 + c, exact",
            "",
            "Bytes moved, peak activation bytes and operators of one step (meta count at the case's batch and dtype).",
            "",
        ]
        md += fits + [""]
    name = plot(out, rows)
    return md, [name] if name else []
