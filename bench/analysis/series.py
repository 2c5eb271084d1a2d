"""Series of records and the one decision of what a cost is fitted against.

A *series* is the ok records of one model (same label, overrides, patch, batch, device,
dtype, mode, compile and threads) on one machine (:func:`machine_of`) at different
resolutions: a folder merged from several machines is fitted per machine. Token models are fitted
against the number of tokens S; convnets, which have no tokens, against the number of
pixels H x W (:func:`fit_x`). Each series with three or more sizes gets the two-term
fit (:func:`bench.analysis.scaling.fit`) of MACs (exact), and of latency and activation
memory (noisy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.analysis import scaling

if TYPE_CHECKING:
    from bench.runs.records import Record

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
        return f"{self.label}{patch} b{c.batch} {c.device} {c.dtype} {c.mode}" + (f" on {self.machine}" if self.machine else "")

    @property
    def legend(self) -> str:
        """The label, with the machine when the folder has several (plots, console)."""
        return f"{self.label} ({self.machine})" if self.machine else self.label


@dataclass(frozen=True)
class FitRow:
    series: Series
    quantity: str  # one of QUANTITIES
    fit: scaling.ScalingFit | None
    note: str = ""


def machine_of(record: Record) -> str:
    """The id of the machine a record ran on (:func:`bench.runs.merge.machine_of`: fingerprint, else env-derived)."""
    from bench.runs.merge import machine_of as of

    return of({"machine": getattr(record, "machine", None), "env": record.env})


def machine_names(records: list[Record]) -> dict[str, str]:
    """Machine id -> a name for reports: the device name, with a short id where two machines share one."""
    names: dict[str, str] = {}
    for r in records:
        ident = machine_of(r)
        if ident not in names:
            gpu = (r.machine or {}).get("gpu") if isinstance((r.machine or {}).get("gpu"), dict) else {}
            names[ident] = (r.env or {}).get("device_name") or gpu.get("name") or (r.machine or {}).get("cpu_model") or ident
    shared = {n for n in names.values() if list(names.values()).count(n) > 1}
    return {i: f"{n} [{i.removeprefix('env-')[:6]}]" if n in shared else n for i, n in names.items()}


def latest_per_machine(records: list[Record]) -> list[Record]:
    """The last record of each case on each machine (``records.latest_by_key``, machines kept apart)."""
    return list({(machine_of(r), r.key): r for r in records}.values())


def series_key(record: Record) -> tuple:
    """Everything of a record's case but the image size (and the label it is reported under), and its machine."""
    c = record.case
    return (record.name, c.model, json.dumps(c.overrides, sort_keys=True), c.patch_size, c.batch, c.device, c.dtype,
            c.mode, c.compile, c.threads, machine_of(record))


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
    return [Series(k[0], k, tuple(sorted(v, key=lambda r: r.case.img_size)), names[k[-1]] if several else None)
            for k, v in groups.items()]


def quantity(record: Record, name: str) -> float:
    if name == "MACs":
        return record.macs
    if name == "latency":
        return record.time.median_s
    if name == "activation memory":
        return record.memory.activation_bytes
    raise ValueError(name)


def samples(s: Series) -> tuple[list[float], list[float]]:
    """(x, per-step time) of every timed block of every case in the series."""
    xs, ys = [], []
    for x, r in zip(s.x(), s.records):
        times = r.time.times_s or (r.time.median_s,)
        xs += [x] * len(times)
        ys += times
    return xs, ys


def fits_of(series: list[Series]) -> list[FitRow]:
    rows = []
    for s in series:
        for name in QUANTITIES:
            x, y = s.x(), [quantity(r, name) for r in s.records]
            if name == "latency":  # every timed sample, not only the medians: the interval then reflects the spread
                x, y = samples(s)
            if len(set(x)) < 3:
                rows.append(FitRow(s, name, None, f"{len(set(x))} sizes; a fit needs 3"))
                continue
            if min(y) <= 0:
                rows.append(FitRow(s, name, None, "a value <= 0 (below what the method resolves)"))
                continue
            rows.append(FitRow(s, name, scaling.fit(x, y, noisy=name != "MACs", axis=s.axis)))
    return rows


def attention_pairs(series: list[Series]) -> list[tuple[Series, Series]]:
    """(fused, explicit) series of the same ViT that differ only in the attention backend."""
    def base(s: Series) -> tuple:
        overrides = {k: v for k, v in s.case.overrides.items() if k != "attn_backend"}
        return (s.case.model, json.dumps(overrides, sort_keys=True)) + s.key[3:]

    fused = {base(s): s for s in series if s.case.overrides.get("attn_backend") == "fused"}
    return [(fused[base(s)], s) for s in series if s.case.overrides.get("attn_backend") == "explicit" and base(s) in fused]
