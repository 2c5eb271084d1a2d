"""Machine-readable verdicts (``fits.json``) and the verdict table of the report.

``fits.json`` holds one object per series and quantity (``macs``, ``latency``,
``activation_memory``): ``model``, ``label``, ``family``, ``attention`` (the backend asked
for, null for models without attention), ``attention_kernel`` (what ran, from the
profile), ``quantity``, ``verdict``, ``quadratic_share`` and ``share_ci`` (what the verdict
was decided on: for profiled latency the time share of quadratic work at the largest
size, else the fitted curve's quadratic share), ``note`` (why, with the drift), and the
curve fit itself (``curve``: a, b, b_ci, share, share_ci, verdict, sizes), ``drift``
(change of the quantity per unit of x over the range), ``axis``, ``x``, ``per_image``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.analysis import stats
from bench.analysis.series import FitRow, quantity, tensor_peaks
from bench.files import write_text_atomically
from bench.text import markdown as md

FILENAME = "fits.json"
QUANTITY_KEYS = {"MACs": "macs", "latency": "latency", "activation memory": "activation_memory"}


def _kernel(row: FitRow) -> str | None:
    kernels = {(r.extra.get("profile") or {}).get("attention_kernel") for r in row.series.records} - {None}
    return ",".join(sorted(kernels)) if kernels else None


def fit_object(row: FitRow) -> dict:
    s = row.series
    c = s.case
    obj = {
        "model": c.model,
        "label": s.label,
        "family": s.records[0].family,
        "attention": c.overrides.get("attn_backend"),
        "attention_kernel": _kernel(row),
        "quantity": QUANTITY_KEYS[row.quantity],
        "verdict": row.verdict,
        "quadratic_share": row.quadratic_share,
        "share_ci": list(row.share_ci) if row.share_ci else None,
        "note": row.drift_note,
        "axis": s.axis,
        "x": s.x(),
        "patch_size": c.patch_size,
        "batch": c.batch,
        "device": c.device,
        "dtype": c.dtype,
        "mode": c.mode,
        "per_image": c.batch == "max",
        "curve": None,
        "drift": None,
        "decided_by": None,
    }
    f = row.fit
    if f is not None:
        obj["curve"] = {
            "a": f.a,
            "b": f.b,
            "c": f.c,
            "b_ci": list(f.b_ci) if f.b_ci else None,
            "quadratic_share": f.quadratic_share,
            "share_ci": list(f.share_ci) if f.share_ci else None,
            "verdict": f.verdict,
            "n_sizes": len(set(s.x())),
            "crossover": f.crossover,
            "max_rel_residual": f.max_rel_residual,
            "note": f.note,
        }
        obj["decided_by"] = "exact count" if not f.noisy else "curve (sizes as units)"
        if f.noisy:
            peaks = tensor_peaks(s) if row.quantity == "activation memory" else None
            values = stats.summarise(*peaks)[1] if peaks else [quantity(r, row.quantity) for r in s.records]
            obj["drift"] = stats.drift(s.x(), values)
            obj["measured_as"] = "profiled peak tensor bytes" if peaks else None
    if row.attribution is not None:
        obj["decided_by"] = "per-operator attribution"
        obj["attribution"] = row.attribution.to_dict()
        obj["drift"] = row.attribution.drift
    return obj


def write_fits_json(out: Path, rows: list[FitRow]) -> Path:
    """Write ``out``/fits.json atomically; returns its path."""
    path = out / FILENAME
    write_text_atomically(path, json.dumps([fit_object(r) for r in rows if r.fit is not None], indent=1) + "\n")
    return path


def verdict_table(rows: list[FitRow]) -> list[str]:
    lines = [
        "| series | quantity | verdict | quadratic share at x_max [95% CI] | decided by | why (and the drift) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row.fit is None:
            continue
        ci = row.share_ci
        share = f"{row.quadratic_share:.0%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci and ci[0] != ci[1] else "")
        by = "attribution" if row.attribution is not None else ("exact count" if not row.fit.noisy else "curve")
        lines.append(
            f"| {md(row.series.title)} | {row.quantity} | **{row.verdict}** | {share} | {by} | {md(row.drift_note)} |"
        )
    return lines


RULE = """\
Verdicts. MACs are exact counts: linear or quadratic only when the fit's residual is zero
(else inconclusive, "not a polynomial"). Measured quantities are fitted on sizes, one
median per size per round (rounds time every size in a shuffled order), 95% intervals
from Student's t with sizes - 3 dof (`bench.analysis.stats`, calibrated by simulation).
Latency with a profile is decided per operator class (`bench.analysis.attribution`): the
quadratic share is the fraction of the step spent on work that is quadratic in x (each
class's work counted exactly), its interval over the rounds; quadratic above 10%, linear
when the whole interval is at most 10%. The drift (time per token or pixel over the range)
is what efficiency did; a curve that bends up with linear work is drift, not a quadratic
term. Activation memory is decided on its curve with the same 10% tolerance.
"""
