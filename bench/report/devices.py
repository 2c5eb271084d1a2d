"""The "Devices side by side" section of a report of a folder that holds several machines.

One table, one row per machine (:func:`bench.analysis.series.machine_of`): its device
name, CPU and GPU model and torch version, then per model family

- the verdicts of the latency and activation-memory fits of each series,
- the crossover S* = a/b of the MAC fit, and of the latency fit where b is significantly
  positive (its 95% interval above 0), else "-",

and the Mixer/ViT throughput ratio at matched sizes: Mixer images/s divided by fused ViT
images/s at the same resolution and patch (same dtype and mode), for the resolutions both
have, median over them; each Mixer is paired with the ViT of the same size name (mixer_b16
with vit_b16), else the ViT closest in parameters; the cell names both models.

Pure: records (and optionally their fit rows) in, Markdown lines out. A folder with one
machine gets no section.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TypeGuard

from bench.analysis.scaling import ScalingFit
from bench.analysis.series import FitRow, Series, fits_of, machine_names, machine_of, series_of
from bench.schema import Env, Machine
from bench.text import markdown as md

FAMILY_NAMES = {"mixer": "Mixer", "vit": "ViT", "resnet": "ResNet"}
FAMILY_ORDER = ("mixer", "vit", "resnet")


def _family(s: Series) -> str:
    r = s.records[0]
    if r.family:
        return r.family
    model = s.case.model.removeprefix("timm:")
    return next((f for f in FAMILY_ORDER if model.startswith(f)), model.split("_")[0])


def _patch(s: Series) -> int | None:
    r = s.records[0]
    return r.counts.patch_size if r.counts is not None else s.case.patch_size


def _size_name(model: str) -> str:
    """ "mixer_b16" -> "b16" (the part after the family), "" when there is none."""
    return model.removeprefix("timm:").partition("_")[2]


def _count(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _significant(fit: ScalingFit | None) -> TypeGuard[ScalingFit]:
    return fit is not None and fit.b_ci is not None and fit.b_ci[0] > 0


def _names(series: list[Series]) -> dict[int, str]:
    """A short name per series of one family on one machine: the label, or the title where labels repeat."""
    labels = [s.label for s in series]
    return {id(s): s.label if labels.count(s.label) == 1 else s.title.removesuffix(f" on {s.machine}") for s in series}


def _ratio_cells(series: list[Series]) -> list[str]:
    """ "mixer / vit fused: 0.85x (5 sizes)" for each Mixer series with a matching fused ViT on this machine."""
    vits = [s for s in series if _family(s) == "vit" and (s.case.attention or "fused") == "fused"]
    cells = []
    for m in (s for s in series if _family(s) == "mixer"):
        same = [
            v
            for v in vits
            if (_patch(v), v.case.dtype, v.case.mode, v.case.compile)
            == (_patch(m), m.case.dtype, m.case.mode, m.case.compile)
        ]
        if not same:
            continue
        params = m.records[0].params or 0
        v = min(
            same,
            key=lambda v: (
                _size_name(v.case.model) != _size_name(m.case.model),
                abs((v.records[0].params or 0) - params),
                v.label,
            ),
        )
        theirs = {r.case.img_size: r.time.images_per_s for r in v.records}
        ratios = [r.time.images_per_s / theirs[r.case.img_size] for r in m.records if r.case.img_size in theirs]
        if ratios:
            cells.append(f"{m.label} / {v.label}: {statistics.median(ratios):.2f}x ({len(ratios)} sizes)")
    return cells


def _environment(records: list) -> tuple[str, str, str, str]:
    """(device, CPU, GPU, torch) of one machine's records; several values joined."""

    def values(get) -> str:
        found = []
        for r in records:
            try:
                v = get(r)
            except (AttributeError, KeyError, TypeError):
                v = None
            if v and v not in found:
                found.append(str(v))
        return ", ".join(found) or "-"

    env = lambda r: r.env or Env()  # noqa: E731
    machine = lambda r: r.machine or Machine()  # noqa: E731
    device = values(lambda r: f"{env(r).device}: {env(r).device_name}" if env(r).device else None)
    cpu = values(lambda r: machine(r).cpu_model or env(r).cpu_model)
    gpu = values(
        lambda r: (
            (gpu.name if (gpu := machine(r).gpu) else None) or (env(r).device_name if env(r).device == "cuda" else None)
        )
    )
    torch = values(lambda r: env(r).torch)
    return device, cpu, gpu, torch


def devices_table(records: Sequence, fit_rows: list[FitRow] | None = None) -> list[str]:
    """The section "Devices side by side" (heading, text, table) for several machines; [] for one."""
    records = list(records)
    names = machine_names(records)
    if len(names) < 2:
        return []
    if fit_rows is None:
        fit_rows = fits_of(series_of(records))
    fits = {(id(row.series), row.quantity): row.fit for row in fit_rows}
    all_series = list({id(row.series): row.series for row in fit_rows}.values())
    by_machine: dict[str, list[Series]] = {ident: [] for ident in names}
    for s in all_series:
        by_machine.setdefault(machine_of(s.records[0]), []).append(s)
    records_of: dict[str, list] = {}
    for r in records:
        records_of.setdefault(machine_of(r), []).append(r)
    present = {_family(s) for s in all_series}
    families = [f for f in FAMILY_ORDER if f in present] + sorted(present - set(FAMILY_ORDER))
    tokens = {f for f in families if any(_family(s) == f and s.axis != "pixels" for s in all_series)}

    header = ["machine", "device", "CPU", "GPU", "torch"]
    for f in families:
        name = FAMILY_NAMES.get(f, f)
        header.append(f"{name}: latency / act. memory verdict")
        if f in tokens:
            header.append(f"{name}: S* from MACs / latency")
    header.append("Mixer/ViT fused images/s, matched sizes (median)")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]

    for ident, name in names.items():
        mine = by_machine.get(ident, [])
        row = [f"{name} (machine {ident})", *_environment(records_of.get(ident, []))]
        for f in families:
            group = [s for s in mine if _family(s) == f]
            short = _names(group)
            verdicts = []
            for s in group:
                lat, mem = fits.get((id(s), "latency")), fits.get((id(s), "activation memory"))
                verdicts.append(f"{short[id(s)]}: {lat.verdict if lat else '-'} / {mem.verdict if mem else '-'}")
            row.append("; ".join(verdicts) or "-")
            if f in tokens:
                cross = []
                for s in group:
                    mac, lat = fits.get((id(s), "MACs")), fits.get((id(s), "latency"))
                    s_mac = _count(mac.crossover_tokens) if mac else "-"
                    s_lat = _count(lat.crossover_tokens) if _significant(lat) else "-"
                    cross.append(f"{short[id(s)]}: {s_mac} / {s_lat}")
                row.append("; ".join(cross) or "-")
        row.append("; ".join(_ratio_cells(mine)) or "-")
        lines.append("| " + " | ".join(md(cell) for cell in row) + " |")  # text from the files: literal

    return (
        [
            "## Devices side by side",
            "",
            f"{len(names)} machines, each fitted on its own records. Verdicts of the latency and activation-memory fits; "
            "S* = a/b, the token count where the quadratic term equals the linear one, from the exact MAC fit and from the "
            "latency fit where b is significantly positive (else -); Mixer images/s over fused-ViT images/s at the same "
            "resolution and patch, median over the resolutions both have.",
            "",
        ]
        + lines
        + [""]
    )
