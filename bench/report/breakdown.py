"""Per-operator breakdown: time per operator class against S (or pixels) for every profiled series.

The classes are those of :mod:`bench.measure.opclass`; each size's median step time is
split in proportion to the profiled self time of each class (CPU time on the CPU, device
time on CUDA: :mod:`bench.analysis.attribution`). ``breakdown.png`` stacks the classes per
size, one panel per series; the table gives milliseconds per class and the share of
attention in the step.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.analysis.attribution import CLASS_LABELS
from bench.analysis.series import FitRow, Series
from bench.files import write_atomically
from bench.measure.opclass import CLASSES
from bench.text import markdown as md
from bench.text import mathtext

PLOT = "breakdown.png"
SHARE_CLASS = "attention"  # the operator class whose share of the step the table and the plot give
COLORS = {
    "attention": "#d62728",
    "token_mixing": "#9467bd",
    "dense": "#1f77b4",
    "norm_elementwise": "#2ca02c",
    "data_movement": "#7f7f7f",
}


def profiled(rows: list[FitRow]) -> list[FitRow]:
    return [r for r in rows if r.quantity == "latency" and r.attribution is not None]


def table(rows: list[FitRow]) -> list[str]:
    head = " | ".join(f"{CLASS_LABELS[c]} ms" for c in CLASSES)
    lines = [
        f"| series | x | ms/step | {head} | attention share | clock | kernel |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in CLASSES) + " | ---: | --- | --- |",
    ]
    for row in profiled(rows):
        s, att = row.series, row.attribution
        if att is None:  # not profiled (see profiled())
            continue
        for x, r, times in zip(s.x(), s.records, att.class_time):
            total = sum(times.values())
            cells = " | ".join(f"{times[c] * 1e3:.2f}" for c in CLASSES)
            kernel = (r.profile.attention_kernel if r.profile else None) or "-"
            lines.append(
                f"| {md(s.label)} | {x:,} | {total * 1e3:.2f} | {cells} | {times[SHARE_CLASS] / total:.0%} | "
                f"{md(att.clock)} | {md(kernel)} |"
            )
    return lines


MAX_PANELS = 8
"""Profiled series drawn one panel each. A folder with more gets one panel per model (label, compile mode,
device, dtype and mode: :func:`bench.report.model_groups`) instead, each class's time the median over the
model's series at each size, with its verdicts counted in the title; every series stays in the table."""


def _panels(rows: list[FitRow]) -> list[tuple[str, Series, list[dict]]]:
    """(title, a series for the x axis, per size: class -> seconds) of each panel of breakdown.png."""
    import numpy as np

    from bench.report import model_groups

    if len(rows) <= MAX_PANELS:
        return [
            (f"{r.series.label}: {r.verdict} ({r.attribution.clock} time)", r.series, r.attribution.class_time)
            for r in rows
            if r.attribution is not None
        ]
    by_series = {id(r.series): r for r in rows}
    panels = []
    for legend, group in model_groups([r.series for r in rows]):
        by_x: dict[float, list[dict]] = {}
        for s in group:
            att = by_series[id(s)].attribution
            assert att is not None  # profiled rows only
            for x, times in zip(s.x(), att.class_time):
                by_x.setdefault(x, []).append(times)
        widest = max(group, key=lambda s: len(s.x()))
        times = [{c: float(np.median([t.get(c, 0.0) for t in by_x[x]])) for c in CLASSES} for x in widest.x()]
        verdicts = Counter(by_series[id(s)].verdict for s in group)
        counted = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        panels.append((f"{legend}: median of {len(group)} series ({counted})", widest, times))
    return panels


def write_plot(out: Path, rows: list[FitRow]) -> list[str]:
    """Write breakdown.png (stacked time per class against x: one panel per profiled series, or per model when
    there are more than MAX_PANELS); the names written."""
    rows = profiled(rows)
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(rows)
    cols = min(2, len(panels))
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 4.2 * nrows), squeeze=False)
    for ax, (title, s, class_time) in zip(axes.flat, panels):
        labels = [f"{x:,}" for x in s.x()]
        bottom = [0.0] * len(labels)
        for c in CLASSES:
            values = [t.get(c, 0.0) * 1e3 for t in class_time]
            if any(values):
                ax.bar(labels, values, bottom=bottom, color=COLORS[c], label=CLASS_LABELS[c])
                bottom = [b + v for b, v in zip(bottom, values)]
        for i, t in enumerate(class_time):
            total = sum(t.values())
            if t.get(SHARE_CLASS, 0.0) > 0 and total > 0:
                ax.annotate(f"{t[SHARE_CLASS] / total:.0%}", (i, bottom[i]), ha="center", va="bottom", fontsize=7)
        ax.set_title(mathtext(title), fontsize=9)
        ax.set_xlabel("pixels H x W" if s.axis == "pixels" else "tokens S")
        ax.set_ylabel("ms per step")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("Time per operator class (profiled step, scaled to the median step; % = attention's share)")
    fig.tight_layout()
    write_atomically(out / PLOT, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return [PLOT]


def markdown(rows: list[FitRow]) -> list[str]:
    if not profiled(rows):
        return []
    return (
        [
            "## Time per operator class",
            "",
            "Each size's median step split over operator classes in proportion to the profiled self time "
            "(`torch.profiler`, module paths from forward hooks, classes from `bench.measure.opclass`); "
            "attention share = attention's part of the step.",
            "",
        ]
        + table(rows)
        + [""]
    )
