"""The measured verdicts, once per commit: the sweep's own rounds, attribution and fits of the quick configurations.

``setup_cache`` runs ``bench.runs.sweep.run_sweep`` (the code of ``mixerbench sweep``: timing
rounds with the sequential rule, per-operator profiles, counts, memory) in a temporary folder
on the quick preset's configurations (Mixer C=128, ViT d=64 at its default attention -- fused today -- and
explicit, ResNet-18;
CPU, one thread, batch 1) at the sizes of ``suites/curves.py``, then fits them with
``bench.analysis.series.fits_of`` -- the same rows as the sweep's fits.json:

- resolution axis: each series over its image sizes (x = S; pixels for ResNet-18);
- patch-size axis: the token models at 192 px over patches 4..16 (x = S).

Per series, quantity (``latency``: the per-operator attribution; ``memory``: activation
memory, the profiled steps' peak tensor bytes) and axis, the tracks are the verdict
(0 linear, 1 inconclusive, 2 quadratic), the quadratic share with both 95% bounds (percent of
the step or of the activation memory at the largest size) and the drift (percent change of
the quantity per token, or per pixel, from the smallest to the largest size).
``AttentionShare`` tracks attention's share of the profiled step at the largest size.
n/a (NaN) where a combination does not exist (ResNet-18 has no patch-size axis).
Every value is oriented so that up is worse (more quadratic), except the drift, which is
reported, not relied on. ``Cost`` tracks what the verdicts cost: the seconds of
``setup_cache`` and the timing rounds that ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import (
    AXES,
    CURVE_IMG_SIZES,
    CURVE_PATCH_IMG_SIZE,
    CURVE_PATCH_SIZES,
    MEASURED_SERIES,
    PIXEL_IMG_SIZES,
    PIXEL_SERIES,
    QUANTITIES,
    QUICK_SERIES,
    TOKEN_SERIES,
    VERDICT_CODES,
    series_case,
)

_ROW_QUANTITY = {"latency": "latency", "memory": "activation memory"}
NAN = float("nan")
MEASURED_TOKEN_SERIES = tuple(s for s in MEASURED_SERIES if s in TOKEN_SERIES)


@dataclass(frozen=True)
class Row:
    """One series, quantity and axis: the verdict, the quadratic share with its 95% bounds, the drift (fractions)."""

    verdict: str
    share: float | None
    share_lo: float
    share_hi: float
    drift: float


@dataclass
class Found:
    """What one run of the measured suite found; asv pickles it as the ``setup_cache`` result.

    ``rows`` by (series, quantity, axis); ``attention`` (attention's share of the profiled step at
    the largest size) and ``rounds`` (timing rounds that ran) by (series, axis).
    """

    rows: dict[tuple[str, str, str], Row] = field(default_factory=dict)
    attention: dict[tuple[str, str], float] = field(default_factory=dict)
    rounds: dict[tuple[str, str], int] = field(default_factory=dict)
    seconds: float = NAN
    log: str = ""


def measured_cases() -> list:
    """The sweep's cases: every series over its image sizes, and the token models' patches at CURVE_PATCH_IMG_SIZE."""
    cases = [series_case(s, size) for s in MEASURED_TOKEN_SERIES for size in CURVE_IMG_SIZES]
    cases += [series_case(s, size) for s in PIXEL_SERIES for size in PIXEL_IMG_SIZES]
    keys = {c.key for c in cases}
    for s in MEASURED_TOKEN_SERIES:
        for patch in CURVE_PATCH_SIZES:
            case = series_case(s, CURVE_PATCH_IMG_SIZE, patch)
            if case.key not in keys:
                cases.append(case)
    return cases


def measure(keep=None) -> Found:
    """Run the sweep on :func:`measured_cases` and fit both axes (asv pickles the result).

    ``keep``: a folder to run the sweep in and keep (results.jsonl, as `mixerbench sweep` writes it);
    None: a temporary one. The sweep's console log is in ``log``.
    """
    import contextlib
    import io
    import tempfile
    import time
    from pathlib import Path

    from bench.runs import presets, sweep

    quick = presets.PRESETS["quick"]
    started = time.perf_counter()
    log = io.StringIO()
    folder = contextlib.nullcontext(keep) if keep is not None else tempfile.TemporaryDirectory(prefix="mixerbench-asv-")
    with folder as where:
        config = sweep.SweepConfig(
            cases=tuple(measured_cases()),
            out=Path(where),
            preset=quick.name,
            min_run_time=quick.min_run_time,
            min_runs=quick.min_runs,
            warmup=quick.warmup,
            threads=quick.threads,
            rounds=quick.rounds,
            min_rounds=quick.min_rounds,
        )
        records = sweep.run_sweep(config, log=log)
    out = verdicts_of(records)
    out.seconds, out.log = time.perf_counter() - started, log.getvalue()
    return out


def verdicts_of(records: list) -> Found:
    """The fits of ``records`` (a run of :func:`measured_cases`) on both axes: rows, attention shares, rounds."""
    from bench.analysis import stats
    from bench.analysis.series import Series, fits_of, series_of, tensor_peaks
    from bench.schema import ATTENTION

    records = [r for r in records if r.status == "ok"]
    labels = {label: name for name, label in QUICK_SERIES.items()}
    by_axis: dict[str, list[Series]] = {"resolution": [], "patch_size": []}
    for s in series_of(records):
        if len(s.records) >= 3:
            by_axis["resolution"].append(s)
    for name in MEASURED_TOKEN_SERIES:
        label = QUICK_SERIES[name]
        mine = [r for r in records if r.label == label and r.case.img_size == CURVE_PATCH_IMG_SIZE]
        mine.sort(key=lambda r: r.tokens)
        if len(mine) >= 3:
            by_axis["patch_size"].append(Series(label, ("patch_size", label), tuple(mine)))

    out = Found()
    for axis, series in by_axis.items():
        for row in fits_of(series):
            name = labels[row.series.label]
            quantity = {v: k for k, v in _ROW_QUANTITY.items()}.get(row.quantity)
            if quantity is None or row.verdict is None:
                continue
            x = row.series.x()
            if row.attribution is not None:
                drift = row.attribution.drift
            elif quantity == "memory" and tensor_peaks(row.series):
                drift = stats.drift(*stats.summarise(*tensor_peaks(row.series))[:2])
            else:
                drift = stats.drift(x, [r.time.median_s for r in row.series.records])
            if row.share_ci is not None:
                lo, hi = row.share_ci
            elif row.fit is not None and not row.fit.noisy and row.quadratic_share is not None:
                lo = hi = row.quadratic_share  # fitted exactly (identical peaks at every repetition): no interval
            else:
                lo = hi = NAN
            out.rows[name, quantity, axis] = Row(row.verdict, row.quadratic_share, lo, hi, drift)
        for s in series:
            top = s.records[-1].profile
            name = labels[s.label]
            out.attention[name, axis] = top.class_share(ATTENTION) if top is not None else NAN
            out.rounds[name, axis] = max(len(r.time.rounds_s) for r in s.records)
    return out


class _Measured:
    # asv keys a setup_cache by its source line: every class below shares this one run per commit.
    timeout = 900

    def setup_cache(self) -> Found:
        return measure()


def _get(found: Found, key: tuple, name: str) -> float:
    """A row's field in percent, to 0.01 (an exact fit's share of 0 comes out as +-1e-13: asv would compare those)."""
    row = found.rows.get(key)
    value = None if row is None else getattr(row, name)
    return NAN if value is None else round(100.0 * value, 2) + 0.0


class Verdicts(_Measured):
    """Per series, quantity and axis: the verdict, the quadratic share and its 95% bounds, the drift."""

    params = (MEASURED_SERIES, QUANTITIES, AXES)
    param_names = ("series", "quantity", "axis")

    def track_verdict(self, found: Found, series: str, quantity: str, axis: str) -> float:
        """0 linear, 1 inconclusive, 2 quadratic (``common.VERDICT_CODES``)."""
        row = found.rows.get((series, quantity, axis))
        return NAN if row is None else VERDICT_CODES[row.verdict]

    track_verdict.unit = "0 linear, 1 inconclusive, 2 quadratic"

    def track_quadratic_share_percent(self, found: Found, series: str, quantity: str, axis: str) -> float:
        return _get(found, (series, quantity, axis), "share")

    track_quadratic_share_percent.unit = "percent"

    def track_quadratic_share_low_percent(self, found: Found, series: str, quantity: str, axis: str) -> float:
        """The lower 95% bound of the share (above 10%: quadratic)."""
        return _get(found, (series, quantity, axis), "share_lo")

    track_quadratic_share_low_percent.unit = "percent"

    def track_quadratic_share_high_percent(self, found: Found, series: str, quantity: str, axis: str) -> float:
        """The upper 95% bound of the share (at most 10%: linear)."""
        return _get(found, (series, quantity, axis), "share_hi")

    track_quadratic_share_high_percent.unit = "percent"

    def track_drift_percent(self, found: Found, series: str, quantity: str, axis: str) -> float:
        """Change of the quantity per token (per pixel) from the smallest size to the largest, in percent."""
        return _get(found, (series, quantity, axis), "drift")

    track_drift_percent.unit = "percent"


class AttentionShare(_Measured):
    """Attention's share of the profiled step at the largest size of each axis (0 for Mixer and ResNet)."""

    params = (MEASURED_SERIES, AXES)
    param_names = ("series", "axis")

    def track_attention_share_percent(self, found: Found, series: str, axis: str) -> float:
        return round(100.0 * found.attention.get((series, axis), NAN), 2) + 0.0

    track_attention_share_percent.unit = "percent"


class Cost(_Measured):
    """What the measured verdicts cost per commit: the seconds of ``setup_cache`` and the rounds that ran."""

    def track_setup_seconds(self, found: Found) -> float:
        return found.seconds

    track_setup_seconds.unit = "seconds"

    def track_rounds(self, found: Found) -> int:
        """Timing rounds summed over the series and axes (fewer: the sequential rule stopped early)."""
        return sum(found.rounds.values())

    track_rounds.unit = "rounds"
