"""Series of records and the one decision of what a cost is fitted against.

A *series* is the ok records of one model (same label, overrides, patch, batch, device,
dtype, mode, compile and threads) on one machine (:func:`machine_of`) at different
resolutions: a folder merged from several machines is fitted per machine. Token models are fitted
against the number of tokens S; convnets, which have no tokens, against the number of
pixels H x W (:func:`fit_x`). Each series with three or more sizes gets the two-term
fit (:func:`bench.analysis.scaling.fit`) of MACs (exact), and of latency and activation
memory (measured: :func:`bench.analysis.stats.fit_measured`, one value per size and
repetition, never every timing block as if it were independent).

A ``--max-batch`` series measured each size at its own batch: its latency and memory are
per image (divided by the batch that ran), never per step, so sizes are comparable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.analysis import scaling, stats
from bench.schema import Record

if TYPE_CHECKING:
    from bench.analysis.attribution import Attribution

QUANTITIES = ("MACs", "latency", "activation memory")


def fit_axis(tokens: int | None) -> str:
    """The x of a fit: "resolution" (x = tokens S) for token models, "pixels" (x = H x W) for convnets."""
    return "pixels" if tokens is None else "resolution"


def fit_x(img_size: int, tokens: int | None) -> int:
    """x for one size: S for token models, H x W pixels for convnets (see :func:`fit_axis`)."""
    return img_size**2 if tokens is None else tokens


@dataclass(frozen=True)
class Series:
    label: str
    key: tuple
    records: tuple  # ok Records, by increasing size
    machine: str | None = None  # the machine's name when the records come from several machines, else None

    @property
    def axis(self) -> str:
        return fit_axis(self.records[0].tokens)

    def x(self) -> list[int]:
        return [fit_x(r.case.img_size, r.tokens) for r in self.records]

    @property
    def case(self):
        return self.records[0].case

    @property
    def title(self) -> str:
        c = self.case
        patch = f" p{c.patch_size}" if c.patch_size else ""
        return f"{self.label}{patch} b{c.batch} {c.device} {c.dtype} {c.mode}{self.compiled}" + (
            f" on {self.machine}" if self.machine else ""
        )

    @property
    def compiled(self) -> str:
        """ " compiled <mode>" for a torch.compile'd series, else "" (older records hold a bool)."""
        mode = self.case.compile
        return "" if mode in ("none", False, None) else f" compiled {'default' if mode is True else mode}"

    @property
    def legend(self) -> str:
        """The label (and compile mode), with the machine when the folder has several (plots, console)."""
        label = self.label + self.compiled
        return f"{label} ({self.machine})" if self.machine else label


@dataclass(frozen=True)
class FitRow:
    series: Series
    quantity: str  # one of QUANTITIES
    fit: scaling.ScalingFit | None
    note: str = ""
    attribution: Attribution | None = None  # latency with profiles: the per-operator attribution

    @property
    def verdict(self) -> str | None:
        """The verdict: per-operator attribution for profiled latency, else the fit's."""
        if self.attribution is not None:
            return self.attribution.verdict
        return self.fit.verdict if self.fit is not None else None

    @property
    def quadratic_share(self) -> float | None:
        if self.attribution is not None:
            return self.attribution.quadratic_share
        return self.fit.quadratic_share if self.fit is not None else None

    @property
    def share_ci(self):
        if self.attribution is not None:
            return self.attribution.share_ci
        return self.fit.share_ci if self.fit is not None else None

    @property
    def peaks(self):
        """The profiled peak tensor bytes an activation-memory fit uses (:func:`tensor_peaks`), else None."""
        return tensor_peaks(self.series) if self.quantity == "activation memory" else None

    @property
    def drift(self) -> float | None:
        """Change of the quantity per unit of x over the range (:func:`bench.analysis.stats.drift`), computed here
        only: the attribution's for attributed latency, the measured values' for other measured fits, else None."""
        if self.attribution is not None:
            return self.attribution.drift
        if self.fit is None or not self.fit.noisy:
            return None
        peaks = self.peaks
        values = stats.summarise(*peaks)[1] if peaks else [quantity(r, self.quantity) for r in self.series.records]
        return stats.drift(self.series.x(), values)

    @property
    def drift_note(self) -> str:
        """Why: the attribution's note (with the drift), or the fit's note and its drift per unit of x."""
        if self.attribution is not None:
            return self.attribution.note
        if self.fit is None:
            return self.note
        parts = [self.fit.note] if self.fit.note else []
        if self.fit.noisy:
            unit = "pixel" if self.series.axis == "pixels" else "token"
            peaks = self.peaks
            per = "image " if self.series.case.batch == "max" else ""
            parts.append(f"{self.quantity} per {per}{unit} {self.drift:+.0%} over the range")
            if peaks:
                parts.append(
                    "fitted on the profiled steps' peak tensor bytes (the RSS figures in the tables wiggle "
                    "a few percent per size)"
                )
            if self.quantity == "latency":
                from bench.analysis import attribution

                why = attribution.unattributed(self.series)
                parts.append(
                    f"no per-operator attribution ({why}): verdict from the curve, which alone cannot tell "
                    "efficiency from work"
                    if why
                    else "no per-operator profile: the curve alone cannot tell efficiency from work"
                )
        return "; ".join(parts)


def machine_of(record: Record) -> str:
    """The id of the machine a record ran on (:attr:`bench.schema.Record.machine_key`: fingerprint, else env-derived)."""
    return record.machine_key


def machine_names(records: list[Record]) -> dict[str, str]:
    """Machine id -> a name for reports: the device name, with a short id where two machines share one."""
    names: dict[str, str] = {}
    for r in records:
        ident = machine_of(r)
        if ident not in names:
            machine, env = r.machine, r.env
            names[ident] = (
                (env.device_name if env else None)
                or (machine.gpu.name if machine and machine.gpu else None)
                or (machine.cpu_model if machine else None)
                or ident
            )
    shared = {n for n in names.values() if list(names.values()).count(n) > 1}
    return {i: f"{n} [{i.removeprefix('env-')[:6]}]" if n in shared else n for i, n in names.items()}


def latest_per_machine(records: list[Record]) -> list[Record]:
    """The last record of each case on each machine (``records.latest_by_key``, machines kept apart)."""
    return list({(machine_of(r), r.key): r for r in records}.values())


def series_key(record: Record) -> tuple[str, str]:
    """A series' identity: its case's (:attr:`bench.schema.Case.series_key`: everything but the image size, with the
    label it is reported under; the same identity the sweep times rounds by) and the machine it ran on."""
    return record.series_key, machine_of(record)


def series_of(records: list[Record]) -> list[Series]:
    """Group ok records into series (everything but the image size equal), in first-seen order.

    With records of several machines each series names its machine (:attr:`Series.machine`).
    """
    groups: dict[tuple, list] = {}
    for r in records:
        if r.status == "ok":
            groups.setdefault(series_key(r), []).append(r)
    names = machine_names(records)
    several = len(names) > 1
    return [
        Series(v[0].name, k, tuple(sorted(v, key=lambda r: r.case.img_size)), names[k[-1]] if several else None)
        for k, v in groups.items()
    ]


def per_image(record: Record) -> int:
    """What measured values are divided by: the batch that ran for a --max-batch case, else 1 (per step)."""
    return (record.batch or 1) if record.case.batch == "max" else 1


def quantity(record: Record, name: str) -> float:
    if name == "MACs" and record.macs is not None:
        return record.macs
    if name == "latency" and record.time is not None:
        return record.time.median_s / per_image(record)
    if name == "activation memory" and record.memory is not None:
        return record.memory.activation_bytes / per_image(record)
    raise ValueError(f"{record.name} has no {name}" if name in QUANTITIES else name)


def rounds_of(record: Record) -> list[list[float]]:
    """Per-step times of a case's timed blocks, one list per repetition (round) of the sweep.

    A case timed by itself (not in rounds) holds one list: all its blocks, one repetition.
    """
    t = record.time
    if t is None:
        raise ValueError(f"{record.name} was not timed")
    if t.rounds_s:
        return [list(r) for r in t.rounds_s]
    return [list(t.times_s or (t.median_s,))]


def samples(s: Series) -> tuple[list[float], list[float], list[int]]:
    """(x, per-step time, round) of every timed block of every case in the series (per image for --max-batch)."""
    xs: list[float] = []
    ys: list[float] = []
    groups: list[int] = []
    for x, r in zip(s.x(), s.records):
        for i, times in enumerate(rounds_of(r)):
            xs += [x] * len(times)
            ys += [t / per_image(r) for t in times]
            groups += [i] * len(times)
    return xs, ys, groups


def tensor_peaks(s: Series) -> tuple[list[float], list[float], list[int]] | None:
    """(x, peak tensor bytes, round) from the profiled steps of a CPU series; None when a record lacks them.

    On the CPU the memory record is the worker's RSS, which carries a per-size wiggle of
    a few percent (pages, allocator size classes: the same at every repetition), enough
    to hide or fake a 20% quadratic share over 7 sizes. The profiled steps also record
    the peak of live tensor bytes (bench.measure.profile.tensor_peak), which is what
    CUDA's allocator figure measures; the activation-memory fit of a CPU series uses it.
    """
    xs: list[float] = []
    ys: list[float] = []
    groups: list[int] = []
    for x, r in zip(s.x(), s.records):
        peaks = r.profile.tensor_peak_bytes_rounds if r.profile else ()
        if r.memory is None or r.memory.method != "cpu_peak_rss" or not peaks or not all(peaks):
            return None
        xs += [x] * len(peaks)
        ys += [p / per_image(r) for p in peaks]
        groups += list(range(len(peaks)))
    return xs, ys, groups


def repeated_exactly(x: Sequence[float], y: Sequence[float]) -> tuple[list[float], list[float]] | None:
    """(sizes, values) when every size was measured more than once and gave the same value every time, else None.

    Such a quantity (the profiled peak of live tensor bytes) is deterministic: its
    repetitions carry no noise to estimate, so it is fitted exactly, not as a noisy curve
    (which, from three sizes, could only say "inconclusive").
    """
    by_x: dict[float, list[float]] = {}
    for v, value in zip(x, y):
        by_x.setdefault(v, []).append(value)
    if not by_x or any(len(values) < 2 or len(set(values)) != 1 for values in by_x.values()):
        return None
    sizes = sorted(by_x)
    return sizes, [by_x[v][0] for v in sizes]


def fits_of(series: list[Series]) -> list[FitRow]:
    rows = []
    for s in series:
        for name in QUANTITIES:
            x: Sequence[float] = s.x()
            y: Sequence[float] = [quantity(r, name) for r in s.records]
            groups: Sequence[int] | None = None
            if name == "latency":  # blocks summarised per round, then per size (bench.analysis.stats)
                x, y, groups = samples(s)
            elif name == "activation memory" and (peaks := tensor_peaks(s)):  # CPU: tensor bytes, not RSS (see there)
                x, y, groups = peaks
                exact = repeated_exactly(x, y)
                if exact is not None and len(exact[0]) >= 3:  # deterministic: the exact rule, as for MACs
                    fit = scaling.fit(*exact, axis=s.axis)
                    unit = "pixel" if s.axis == "pixels" else "token"
                    note = (
                        f"profiled peak tensor bytes, identical at every repetition of every size: fitted exactly; "
                        f"{name} per {unit} {stats.drift(*exact):+.0%} over the range"
                    )
                    rows.append(
                        FitRow(s, name, dataclasses.replace(fit, note=f"{note}; {fit.note}" if fit.note else note))
                    )
                    continue
            if len(set(x)) < 3:
                rows.append(FitRow(s, name, None, f"{len(set(x))} sizes; a fit needs 3"))
                continue
            if min(y) <= 0:
                rows.append(FitRow(s, name, None, "a value <= 0 (below what the method resolves)"))
                continue
            if name == "MACs":
                rows.append(FitRow(s, name, scaling.fit(x, y, axis=s.axis)))
            elif name == "latency":
                from bench.analysis import attribution

                curve = stats.fit_measured(x, y, groups, axis=s.axis)
                rows.append(
                    FitRow(s, name, curve, attribution=attribution.attribute(s, [quantity(r, name) for r in s.records]))
                )
            else:
                rows.append(FitRow(s, name, stats.fit_measured(x, y, groups, axis=s.axis)))
    return rows


def attention_pairs(series: list[Series]) -> list[tuple[Series, Series]]:
    """(fused, explicit) series of the same ViT that differ only in the attention backend."""

    def base(s: Series) -> tuple:
        overrides = {k: v for k, v in s.case.overrides.items() if k != "attn_backend"}
        return s.case.replace(overrides=overrides, label="").series_key, s.key[-1]  # without backend and label

    fused = {base(s): s for s in series if s.case.attention in ("fused", "sdpa")}
    return [(fused[base(s)], s) for s in series if s.case.attention == "explicit" and base(s) in fused]
