"""Machine-readable verdicts (``fits.json``) and the verdict table of the report.

``fits.json`` holds one object per series and quantity (``macs``, ``latency``,
``activation_memory``): ``model``, ``label``, ``family``, ``attention`` (the backend asked
for, null for models without attention), ``attention_kernel`` (what ran, from the
profile), ``quantity``, ``verdict``, ``quadratic_share`` and ``share_ci`` (what the verdict
was decided on: for profiled latency the time share of quadratic work at the largest
size, else the fitted curve's quadratic share), ``note`` (why, with the drift), and the
curve fit itself (``curve``: a, b, b_ci, share, share_ci, verdict, sizes), ``drift``
(change of the quantity per unit of x over the range), ``axis``, ``x``, ``per_image``, and
where it ran: ``machine`` (the fingerprint id), ``machine_name``, ``threads``.
The file is strict JSON: a number that is not finite is written as null.
"""

from __future__ import annotations

from pathlib import Path

from bench import schema
from bench.analysis.series import FitRow, machine_of
from bench.files import write_text_atomically
from bench.text import markdown as md

FILENAME = schema.FITS_FILENAME
QUANTITY_KEYS = {"MACs": "macs", "latency": "latency", "activation memory": "activation_memory"}


def _kernel(row: FitRow) -> str | None:
    kernels = {r.profile.attention_kernel for r in row.series.records if r.profile} - {None}
    return ",".join(sorted(kernels)) if kernels else None


def fit_object(row: FitRow) -> schema.FitRecord:
    s = row.series
    c = s.case
    f, verdict = row.fit, row.verdict
    assert f is not None and verdict is not None  # fits.json holds the rows with a fit
    attribution = None
    if row.attribution is not None:
        a = row.attribution
        attribution = schema.FitAttribution(
            verdict=a.verdict,
            quadratic_share=a.quadratic_share,
            share_ci=a.share_ci,
            quadratic_classes=a.quadratic_classes,
            drift=a.drift,
            class_drift=a.class_drift,
            clock=a.clock,
        )
    return schema.FitRecord(
        model=c.model,
        label=s.label,
        family=s.records[0].family,
        attention=c.attention,
        attention_kernel=_kernel(row),
        quantity=QUANTITY_KEYS[row.quantity],
        verdict=verdict,
        quadratic_share=row.quadratic_share,
        share_ci=row.share_ci,
        note=row.drift_note,
        axis=s.axis,
        x=tuple(s.x()),
        patch_size=c.patch_size,
        batch=c.batch,
        device=c.device,
        dtype=c.dtype,
        mode=c.mode,
        machine=machine_of(s.records[0]),  # the machine's id: same-named series of two machines stay apart
        machine_name=s.machine,  # its name in the report when the folder holds several machines, else null
        threads=c.threads if c.threads is not None else (env.torch_threads if (env := s.records[0].env) else None),
        per_image=c.batch == "max",
        curve=schema.FitCurve(
            a=f.a,
            b=f.b,
            c=f.c,
            b_ci=f.b_ci,
            quadratic_share=f.quadratic_share,
            share_ci=f.share_ci,
            verdict=f.verdict,
            n_sizes=len(set(s.x())),
            crossover=f.crossover,
            max_rel_residual=f.max_rel_residual,
            note=f.note,
        ),
        drift=row.drift,
        decided_by=decided_by(row) if not f.noisy or row.attribution is not None else "curve (sizes as units)",
        measured_as=("profiled peak tensor bytes" if row.peaks else None) if f.noisy else "",
        attribution=attribution,
    )


def write_fits_json(out: Path, rows: list[FitRow]) -> Path:
    """Write ``out``/fits.json atomically (:func:`bench.schema.dumps_fits`: strict JSON, a value that is not finite
    is null); returns its path."""
    path = out / FILENAME
    write_text_atomically(path, schema.dumps_fits([fit_object(r) for r in rows if r.fit is not None]))
    return path


def decided_by(row: FitRow) -> str:
    """What decided the row's verdict: the per-operator attribution, the exact rule, or the measured curve."""
    if row.attribution is not None:
        return "per-operator attribution"
    if row.fit is not None and not row.fit.noisy:
        return "exact count" if row.quantity == "MACs" else "exact fit (identical repetitions)"
    return "curve"


SHARE_OUTSIDE = (
    "A quadratic share outside [0%, 100%] (marked †) is not a fraction of the cost: the fitted "
    "linear term or constant is negative over the measured range (the curve bends more than a*x + b*x^2 + c "
    'with positive parts can), so it reads as "mostly quadratic" above 100% and "bends down" below 0%; '
    "its interval says how firm that is."
)


def share_text(share: float | None, ci=None) -> str:
    """The share and its 95% interval as the tables print them; † marks a share outside [0, 100%] (see SHARE_OUTSIDE)."""
    if share is None:
        return "-"
    text = f"{share:.0%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci and ci[0] != ci[1] else "")
    return text + (" †" if not 0 <= share <= 1 else "")


def verdict_table(rows: list[FitRow]) -> list[str]:
    lines = [
        "| series | quantity | verdict | quadratic share at x_max [95% CI] (of what decided) | decided by "
        "| the curve's own verdict, share | why (and the drift) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row.fit is None:
            continue
        share = share_text(row.quadratic_share, row.share_ci)
        by = decided_by(row)
        curve = f"{row.fit.verdict}, {share_text(row.fit.quadratic_share, row.fit.share_ci)}"
        lines.append(
            f"| {md(row.series.title)} | {row.quantity} | **{row.verdict}** | {share} | {by} | {curve} | "
            f"{md(row.drift_note)} |"
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
