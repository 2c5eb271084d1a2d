"""The report of a sweep folder: report.md, PNG plots (matplotlib, Agg) and a console summary.

Everything is rebuilt from ``results.jsonl`` (and ``peers.jsonl`` when present), so
``mixerbench report DIR`` gives the same report as the sweep that wrote DIR.

Series and their fits come from :mod:`bench.analysis.series`; this package only
lays them out: tables and text here, plots in PNG files. A folder of many series (a
cluster sweep: every model at every batch on every machine) is read one line at a time
(:func:`read_latest`) and summarised in its plots, one line per model (:data:`MAX_LINES`),
while its tables keep every series.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench import schema
from bench.analysis import scaling
from bench.analysis.series import (
    QUANTITIES,
    FitRow,
    Series,
    attention_pairs,
    fits_of,
    latest_per_machine,
    machine_of,
    quantity,
    series_of,
)
from bench.files import UnsafeFile, write_atomically, write_text_atomically
from bench.report import breakdown, compile_energy, verdicts
from bench.report.devices import devices_table
from bench.runs import machine
from bench.runs.predictions import PredictionKey
from bench.schema import PeerRecord, Record, StepPrediction
from bench.text import markdown as escape
from bench.text import markdown as md  # text from results files, as literal Markdown
from bench.text import mathtext

MiB = 2**20
PLOTS = {
    "macs": "macs_vs_tokens.png",
    "throughput": "throughput_vs_resolution.png",
    "time": "latency_vs_tokens.png",
    "memory": "memory_vs_tokens.png",
    "attention": "attention_memory.png",
}


# --- plots -------------------------------------------------------------------------------


MAX_LINES = 12
"""Series a plot draws one by one. A folder with more (a cluster sweep: every model at every batch on every
machine) gets one line per model instead (:func:`model_groups`): the median over its series at each size,
with a band from the lowest to the highest; each series' own values, fits and verdicts stay in the tables."""


def model_groups(series: Sequence[Series]) -> list[tuple[str, list[Series]]]:
    """Series by model (label and compile mode), device, dtype and mode, in first-seen order: (legend, series)."""
    groups: dict[str, list[Series]] = {}
    for s in series:
        c = s.case
        groups.setdefault(f"{s.label}{s.compiled} {c.device} {c.dtype} {c.mode}", []).append(s)
    return list(groups.items())


def _plot_band(ax, series: Sequence[Series], x, y, style: str = "o-") -> None:
    """One line per model group: the median of ``y(record)`` over its series at each ``x(series)`` value, and a
    band from the lowest to the highest (the summary drawn when there are more than MAX_LINES series)."""
    import numpy as np

    for legend, group in model_groups(series):
        by_x: dict[float, list[float]] = {}
        for s in group:
            for v, r in zip(x(s), s.records):
                by_x.setdefault(v, []).append(y(r))
        xs = sorted(by_x)
        values = [np.asarray(by_x[v]) for v in xs]
        line = ax.plot(
            xs, [float(np.median(v)) for v in values], style, label=mathtext(f"{legend}: median of {len(group)}")
        )[0]
        ax.fill_between(
            xs, [v.min() for v in values], [v.max() for v in values], color=line.get_color(), alpha=0.2, lw=0
        )


def _plot_series(ax, series: list[Series], name: str, fits: dict, scale: float, summary: bool) -> None:
    """Each series' points and fit on log axes, or with ``summary`` one band per model (:func:`_plot_band`)."""
    import numpy as np

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if summary:
        _plot_band(ax, series, Series.x, lambda r: quantity(r, name) / scale)
        return
    for s in series:
        x = s.x()
        y = [quantity(r, name) / scale for r in s.records]
        line = ax.plot(x, y, "o", label=mathtext(s.legend))[0]
        f = fits.get((s.key, name))
        if f is not None:
            grid = np.geomspace(min(x), max(x), 60)
            ax.plot(
                grid,
                [f.predict(v) / scale for v in grid],
                "-",
                color=line.get_color(),
                alpha=0.6,
                label=f"  fit: {f.verdict}",
            )


def _two_panels(plt, series: list[Series], name: str, fits: dict, ylabel: str, scale: float, title: str):
    tokens = [s for s in series if s.axis != "pixels"]
    pixels = [s for s in series if s.axis == "pixels"]
    panels = [(p, lbl) for p, lbl in ((tokens, "tokens S"), (pixels, "pixels H x W (convnets)")) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, (group, xlabel) in zip(axes[0], panels):
        _plot_series(ax, group, name, fits, scale, summary=len(series) > MAX_LINES)
        ax.set_xlabel(xlabel + " (log)")
        ax.set_ylabel(ylabel + " (log)")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_plots(out: Path, series: list[Series], fit_rows: list[FitRow]) -> list[str]:
    """Write the PNG plots; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = {(row.series.key, row.quantity): row.fit for row in fit_rows if row.fit is not None}
    written: list[str] = []
    if not series:
        return written

    def save(fig, key):
        write_atomically(out / PLOTS[key], lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
        written.append(PLOTS[key])

    save(
        _two_panels(
            plt,
            series,
            "MACs",
            fits,
            "GMACs per image",
            1e9,
            "MACs (fvcore convention, attention counted) and the fit a*x + b*x^2 + c",
        ),
        "macs",
    )
    save(
        _two_panels(
            plt, series, "latency", fits, "latency per step, ms", 1e-3, "Measured latency (median) with the noisy fit"
        ),
        "time",
    )
    save(
        _two_panels(
            plt,
            series,
            "activation memory",
            fits,
            "activation memory, MiB",
            MiB,
            "Peak activation memory of one step (peak minus memory before the step)",
        ),
        "memory",
    )

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    if len(series) > MAX_LINES:
        _plot_band(ax, series, lambda s: [r.case.img_size for r in s.records], lambda r: r.time.images_per_s)
    for s in series if len(series) <= MAX_LINES else ():
        ax.plot(
            [r.case.img_size for r in s.records],
            [r.time.images_per_s for r in s.records],
            "o-",
            label=mathtext(s.legend),
        )
    save(_finish(fig, ax, "resolution, px", "images / s (log)", "Throughput", xlog=False), "throughput")

    pairs = attention_pairs(series)
    if pairs:
        fig, ax = plt.subplots(figsize=(6.5, 4.8))
        if 2 * len(pairs) > MAX_LINES:
            for half, style in ((0, "o-"), (1, "s--")):
                _plot_band(ax, [p[half] for p in pairs], Series.x, lambda r: r.memory.activation_bytes / MiB, style)
        for fused, explicit in pairs if 2 * len(pairs) <= MAX_LINES else ():
            for s, style in ((fused, "o-"), (explicit, "s--")):
                ax.plot(s.x(), [r.memory.activation_bytes / MiB for r in s.records], style, label=mathtext(s.legend))
        save(
            _finish(
                fig,
                ax,
                "tokens S (log)",
                "activation memory, MiB (log)",
                "ViT attention: fused (SDPA) vs explicit (S x S matrix)",
            ),
            "attention",
        )
    return written


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, xlog: bool = True):
    """Log axes (x optionally linear), grid, labels, legend and title: the look of every single-panel plot."""
    if xlog:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --- text ----------------------------------------------------------------------------------


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _mib(n: float) -> str:
    return f"{n / MiB:.1f}"


def _ci(fit: scaling.ScalingFit) -> str:
    return "-" if fit.b_ci is None else f"[{fit.b_ci[0]:.3g}, {fit.b_ci[1]:.3g}]"


def _exponents(fit: scaling.ScalingFit) -> str:
    e = fit.local_exponents
    return "-" if not e else f"{e[0]:.2f} -> {e[-1]:.2f}"


def fit_table(rows: list[FitRow]) -> list[str]:
    lines = [
        "| series | quantity | x | a | b | b 95% CI | crossover x* = a/b | quadratic share at x_max | local exponents "
        "| the curve's verdict | decided verdict (by) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        f = row.fit
        xname = "pixels" if row.series.axis == "pixels" else "S"
        if f is None:
            lines.append(
                f"| {md(row.series.title)} | {row.quantity} | {xname} | | | | | | | | not fitted: {md(row.note)} |"
            )
            continue
        cross = "-" if f.crossover is None else f"{f.crossover:,.0f}"
        share = verdicts.share_text(f.quadratic_share, f.share_ci)  # the curve's share, beside the curve's verdict
        lines.append(
            f"| {md(row.series.title)} | {row.quantity} | {xname} | {f.a:.3g} | {f.b:.3g} | {_ci(f)} | {cross} | {share} | "
            f"{_exponents(f)} | {f.verdict} | **{row.verdict}** ({verdicts.decided_by(row)}) |"
        )
    return lines


def verdict_counts(rows: list[FitRow]) -> list[str]:
    """One row per model (:func:`model_groups`) and quantity: how many of its series got each verdict."""
    by_series: dict[int, list[FitRow]] = {}
    for row in rows:
        by_series.setdefault(id(row.series), []).append(row)
    lines = [
        "| model | quantity | series | linear | quadratic | inconclusive | not fitted |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for legend, group in model_groups([row.series for row in rows if row.quantity == QUANTITIES[0]]):
        for name in QUANTITIES:
            got = [r.verdict for s in group for r in by_series[id(s)] if r.quantity == name]
            lines.append(
                f"| {md(legend)} | {name} | {len(got)} | {got.count('linear')} | {got.count('quadratic')} | "
                f"{got.count('inconclusive')} | {got.count(None)} |"
            )
    return lines


def _shares_outside(rows: list[FitRow]) -> bool:
    shares = [s for row in rows if row.fit is not None for s in (row.fit.quadratic_share, row.quadratic_share)]
    return any(s is not None and not 0 <= s <= 1 for s in shares)


def case_table(records: list) -> list[str]:
    lines = [
        "| model | px | patch | S | batch | dtype | mode | GMACs/img | ms/step (IQR) | img/s | MFU | weights MiB | activations MiB | peak MiB | status |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in records:
        c = r.case
        common = (
            f"| {md(r.name)} | {c.img_size} | {c.patch_size or '-'} | {r.tokens or '-'} | "
            f"{md(r.batch or c.batch)} | {md(c.dtype)} | {md(c.mode)} | "
        )
        if r.status != "ok":
            macs = f"{r.macs / 1e9:.3f}" if r.macs is not None else ""
            lines.append(common + f"{macs} | | | | | | | {md(r.status)}: {md(r.error or '')} |")
            continue
        t, m = r.time, r.memory
        lines.append(
            common + f"{r.macs / 1e9:.3f} | {t.median_s * 1e3:.2f} ({t.iqr_s * 1e3:.2f}) | {t.images_per_s:.1f} | "
            f"{_percent(r.mfu)} | {_mib(m.weights_bytes)} | {_mib(m.activation_bytes)} | {_mib(m.peak_bytes)} | ok |"
        )
    return lines


def mfu_note(records: list) -> list[str]:
    """A note under the cases when an MFU is above 100%: the roof was beaten, and what that means."""
    above = [r for r in records if r.status == "ok" and r.mfu is not None and r.mfu > 1]
    if not above:
        return []
    worst = max(above, key=lambda r: r.mfu)
    return [
        f"**MFU above 100%** in {len(above)} case{'s' * (len(above) != 1)} (highest: {md(worst.name)} at "
        f"{worst.case.img_size} px, {worst.mfu:.0%}): the roof, timed at the start of the run as the best of a square "
        "matmul, an MLP matmul and a 3x3 convolution (older records: one square matmul), was slower than this model's "
        "own kernels here (another kernel shape, clocks that changed during the run, or the roof timed under load). "
        "Such an MFU compares the model with that roof; it is not a fraction of the device's peak.",
        "",
    ]


def attention_table(pairs: list[tuple[Series, Series]]) -> list[str]:
    lines = [
        "| model | S | fused activations MiB | explicit activations MiB | explicit / fused | fused ms | explicit ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fused, explicit in pairs:
        by_size = {r.case.img_size: r for r in explicit.records}
        for f in fused.records:
            e = by_size.get(f.case.img_size)
            if e is None:
                continue
            fa, ea = f.memory.activation_bytes, e.memory.activation_bytes
            ratio = f"{ea / fa:.1f}x" if fa > 0 else "-"
            model = fused.label.removesuffix(" fused") + (f" ({fused.machine})" if fused.machine else "")
            lines.append(
                f"| {md(model)} | {f.tokens} | {_mib(fa)} | {_mib(ea)} | {ratio} | "
                f"{f.time.median_s * 1e3:.1f} | {e.time.median_s * 1e3:.1f} |"
            )
    return lines


def peers_table(records: list[PeerRecord]) -> list[str]:
    lines = [
        "| ours | timm | px | batch | dtype | ours ms | timm ms | ratio ours/timm (median) | IQR of ratio | rounds |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in records:
        c, p = r.case, r.paired
        lines.append(
            f"| {md(c.ours)} | {md(c.timm)} | {c.img_size} | {c.batch} | {md(c.dtype)} | {p.median_a_s * 1e3:.0f} | "
            f"{p.median_b_s * 1e3:.0f} | {p.ratio_median:.3f} | {p.ratio_q1:.3f} - {p.ratio_q3:.3f} | {p.rounds} |"
        )
    return lines


def _environment(records: list[Record]) -> list[str]:
    envs = {dataclasses.replace(r.env, date=None): r.env for r in records if r.env is not None}
    lines = []
    for env in envs:

        def shown(value: object) -> str:
            return "?" if value is None else md(value)  # an older or partial record: '?'; file text: literal Markdown

        lines.append(
            f"- {shown(env.device)}: {shown(env.device_name)}; CPU {shown(env.cpu_model)}, {shown(env.cpu_count)} cores, "
            f"torch threads {shown(env.torch_threads)}; torch {shown(env.torch)}, timm {shown(env.timm)}, "
            f"Python {shown(env.python)}; harness commit {shown(env.git_commit)}"
        )
    dates = sorted(r.env.date for r in records if r.env is not None and r.env.date is not None)
    if dates:
        lines.append(
            f"- run started {md(dates[0])}"
            if dates[0] == dates[-1]
            else f"- runs started {md(dates[0])} to {md(dates[-1])}"
        )
    roofs = sorted(
        {(r.case.device, r.case.dtype, r.roof_flops_per_s) for r in records if r.roof_flops_per_s is not None}
    )
    for device, dtype, roof in roofs:
        lines.append(f"- matmul roof {md(device)} {md(dtype)}: {roof / 1e9:.1f} GFLOP/s (measured in the run)")
    return lines


METHODS = """\
- **Latency**: `torch.utils.benchmark.Timer.blocked_autorange` on all torch threads after
  warm-up steps; median and interquartile range (IQR) of the per-step time. A step is a
  forward pass under `torch.inference_mode` (infer) or forward, cross-entropy, backward
  and an SGD step (train); lower precision through `torch.autocast`; channels_last for
  convnets. images/s = batch / median.
- **MFU** = achieved FLOP/s / the matmul roof: achieved = 2 x MACs x images/s for
  inference and 6 x MACs x images/s for training (backward ~ 2 forward passes); the roof
  is a large matmul of the same dtype timed on the same device at the start of the run
  (lower precision: a linear layer's matmul under autocast, the way the models run).
- **Memory** (CPU): resident set size of a separate worker process (Linux /proc), peak
  mark reset before each case; glibc mmaps every block above 64 KiB so freed tensors
  leave the RSS. *weights* = RSS after building the model minus before; *activations* =
  peak RSS during one (second) step minus RSS just before it; *peak* includes the Python
  interpreter and torch (about 0.5-0.7 GB). (CUDA): `torch.cuda.max_memory_allocated`
  after a reset: tensors only, no CUDA context or allocator cache.
- **Fits**: cost = a*x + b*x^2 + c by least squares (`bench.analysis`), x = tokens S
  (convnets: pixels). MACs are exact counts; latency and memory are fitted on one median per
  size and round, with a 95% interval of b. *quadratic share* = b*x_max^2 / cost(x_max);
  *crossover* x* = a/b, shown only where b is significantly positive. Verdicts: see the
  Verdicts section (latency decided per operator class when profiled).
"""


def read_latest(path: Path) -> tuple[list[Record], list[schema.Problem]]:
    """The last record of each case on each machine in results file ``path`` (:func:`latest_per_machine`) and the
    file's bad lines, read one line at a time (:func:`bench.schema.iter_jsonl`): records a later line replaces are
    dropped as soon as it is read, and the file itself is never held in memory."""
    latest: dict[tuple[str, str], Record] = {}
    problems: list[schema.Problem] = []
    for item in schema.iter_jsonl(path, Record):
        if isinstance(item, schema.Problem):
            problems.append(item)
        else:
            latest[(machine_of(item), item.key)] = item  # the first position, the last record (as latest_per_machine)
    return list(latest.values()), problems


def build(
    out: Path,
    raw: list[Record] | None = None,
    problems: Sequence[schema.Problem] = (),
    predicted: Mapping[PredictionKey, StepPrediction] | None = None,
) -> tuple[str, str, list[str], list[str]]:
    """(report markdown, console summary, plot files written, warnings) for folder ``out``.

    ``raw`` are the records of ``out/results.jsonl`` (all of them, or only the latest of each case and machine:
    :func:`read_latest`) and ``problems`` its bad lines, when the caller has read them already (the file is parsed
    once); None: read here. ``predicted``: the calibrated model's predictions of the GPU records
    (:func:`bench.runs.predictions.predict_records`), shown in the roofline section.
    """
    path = out / schema.RESULTS_FILENAME
    if raw is None:
        raw, problems = read_latest(path)
    warnings = [f"{p} (ignored)" for p in problems]
    records = latest_per_machine(raw)  # one record per case and machine (a merged folder holds several machines)
    series = series_of(records)
    fit_rows = fits_of(series)
    plots = write_plots(out, series, fit_rows) + breakdown.write_plot(out, fit_rows)
    verdicts.write_fits_json(out, fit_rows)
    pairs = attention_pairs(series)
    peers: list = []
    if (out / schema.PEERS_FILENAME).exists():
        peers, peer_problems = schema.read_peers(out / schema.PEERS_FILENAME)
        warnings += [f"{p} (ignored)" for p in peer_problems]
    try:
        machine_json = machine.read(out / machine.FILENAME)
    except UnsafeFile as exc:  # a symlink, FIFO or device: not read, said once
        machine_json = None
        warnings.append(f"{exc}; its clock and sharing warnings are not shown")
    warnings += machine.report_warnings(records, machine_json)  # clocks, sharing, throttling

    status: dict[str, int] = {}
    for r in records:
        status[r.status] = status.get(r.status, 0) + 1
    md = [
        "# mixerbench sweep report",
        "",
        f"{len(records)} cases from `{path.name}`: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())) + ".",
        "",
    ]
    md += ["## Environment", ""] + _environment(records) + [""]
    if len(series) > MAX_LINES:
        md += [
            "## Verdicts by model",
            "",
            f"{len(series)} series: each model at each batch on each machine is a series of its own, fitted by "
            "itself. The plots draw one line per model (the median over its series, with a band from the lowest to "
            "the highest); the tables below give every series.",
            "",
        ]
        md += verdict_counts(fit_rows) + [""]
    if fit_rows:
        md += [
            "## Scaling fits: cost = a*x + b*x^2 + c",
            "",
            "x is the number of tokens S (class token included) or, for convnets, pixels. "
            "MACs per image; latency in seconds per step, activation memory in bytes (per image for --max-batch); "
            "measured quantities fitted on one median per size and round.",
            "",
        ]
        md += fit_table(fit_rows) + [""]
        if _shares_outside(fit_rows):
            md += [verdicts.SHARE_OUTSIDE, ""]
        md += ["## Verdicts (also in fits.json)", "", verdicts.RULE] + verdicts.verdict_table(fit_rows) + [""]
        if _shares_outside(fit_rows):
            md += [verdicts.SHARE_OUTSIDE, ""]
        md += breakdown.markdown(fit_rows)
    md += devices_table(records, fit_rows)  # several machines (a merged folder): one row per machine
    if pairs:
        md += [
            "## ViT attention: fused vs explicit",
            "",
            "Same weights; the explicit backend materialises the S x S attention matrix (quadratic memory), "
            "the fused one (`scaled_dot_product_attention`) does not need to.",
            "",
        ]
        md += attention_table(pairs) + [""]
    if peers:
        md += ["## Reference models vs timm (interleaved in one run)", ""] + peers_table(peers) + [""]
    md += compile_energy.compile_table(records) + compile_energy.energy_table(records)
    from bench.report import roofline

    roof_md, roof_plots = roofline.section(records, out, predicted)  # predicted vs measured time per operator class
    md += roof_md
    plots = plots + roof_plots
    md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    md += ["## Cases", ""] + case_table(records) + [""] + mfu_note(records)
    md += ["## How it was measured", "", METHODS]
    if warnings:
        md += ["## Warnings", ""] + [f"- {escape(w)}" for w in warnings] + [""]

    console = ["", "model                      px     S  ms/step   img/s    MFU  act MiB  status"]
    for r in records:
        head = f"{r.name[:24]:<24} {r.case.img_size:>4} {r.tokens or '-':>5} "
        if r.status == "ok" and r.time and r.memory:  # an ok record has both
            console.append(
                head + f"{r.time.median_s * 1e3:>8.1f} {r.time.images_per_s:>7.1f} {_percent(r.mfu):>6} "
                f"{r.memory.activation_bytes / MiB:>8.1f}  ok"
            )
        else:
            console.append(head + f"{'':>8} {'':>7} {'':>6} {'':>8}  {r.status}")
    console.append("")
    for row in fit_rows:
        if row.fit is None:
            continue
        console.append(f"{row.series.legend[:24]:<24} {row.quantity:<17} {row.verdict:<12} {row.drift_note}")
    return "\n".join(md), "\n".join(console), plots, warnings


def write_report(
    out: Path,
    raw: list[Record] | None = None,
    problems: Sequence[schema.Problem] = (),
    predicted: Mapping[PredictionKey, StepPrediction] | None = None,
) -> str:
    """Write ``out``/report.md and the plots; return the console summary (warnings go to stderr).

    ``raw``, ``problems`` and ``predicted``: see :func:`build`.
    """
    md, console, _, warnings = build(out, raw, problems, predicted)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    write_text_atomically(out / "report.md", md + "\n")
    return console
