"""The report's compile-mode table and energy table (``bench.measure.compiling``, ``bench.measure.energy``).

The compile-mode table puts every compile mode of one case side by side: step time,
throughput, the speed-up over eager, and what compiling cost (first call, warm-up until
steady), with energy per image where it was measured. Where the folder holds Mixer-B/16
and ViT-B/16 at the same size, it gives their throughput ratio per compile mode beside
timm's published RTX 5090 ratio (:data:`TIMM_RTX5090`), the comparison a GPU run makes.

The energy table lists the measured cases; cases without a measurement are counted
per reason (the CPU, no NVML, a counter NVML does not support).
"""

from __future__ import annotations

from collections import defaultdict

from bench.schema import Energy, Record, Timing

# timm's published benchmark (RTX 5090, torch 2.9.1, AMP, inference img/s at 224 px): eager and inductor.
TIMM_RTX5090 = {
    "none": {"mixer_b16": 3627.0, "vit_b16": 3916.0, "resnet50": 6356.0},
    "default": {"mixer_b16": 5106.0, "vit_b16": 4379.0, "resnet50": 12401.0},
}
MODE_ORDER = ("none", "default", "reduce-overhead", "max-autotune")


def _mode(record: Record) -> str:
    mode = record.case.compile
    if mode is True:
        return "default"
    if mode in (False, None):
        return "none"
    return str(mode)


def _time(record: Record) -> Timing:
    """The step time of an ok record (an ok record always has one: bench.schema.Record)."""
    assert record.time is not None, "an ok record without a time"
    return record.time


def _group_key(record: Record) -> tuple:
    c = record.case
    return (record.name, c.img_size, c.patch_size, record.batch or c.batch, c.device, c.dtype, c.mode)


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def compile_table(records: list[Record]) -> list[str]:
    """Markdown lines of the compile-mode section; [] when every case ran eager."""
    ok = [r for r in records if r.status == "ok"]
    if all(_mode(r) == "none" for r in ok):
        return []
    groups: dict[tuple, dict[str, Record]] = defaultdict(dict)
    for r in ok:
        groups[_group_key(r)][_mode(r)] = r
    lines = [
        "## Compile modes (torch.compile)",
        "",
        "Each mode is a series of its own. Compile time is kept apart from the step time: the first call "
        "(tracing and compiling) and the warm-up steps until the step time was steady. Counts (MACs, bytes) are "
        "the eager model's. A compiled step's fused kernels carry no operator name, so its latency verdict "
        "comes from the curve, not from per-operator attribution.",
        "",
        "| model | px | batch | dtype | mode | compile | ms/step (IQR) | img/s | vs eager | first call s | "
        "warm-up s (steps) | J/img |",
        "| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, by_mode in groups.items():
        if set(by_mode) == {"none"}:
            continue
        eager = by_mode.get("none")
        for mode in sorted(by_mode, key=lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else 99):
            r = by_mode[mode]
            t = _time(r)
            speed = f"{_time(eager).median_s / t.median_s:.2f}x" if eager is not None else "-"
            ct, energy = r.compile_time, r.energy
            warm = f"{ct.warmup_s:.2f} ({ct.warmup_steps})" if ct is not None else "-"
            lines.append(
                f"| {key[0]} | {key[1]} | {key[3]} | {key[5]} | {key[6]} | {mode} | "
                f"{t.median_s * 1e3:.2f} ({t.iqr_s * 1e3:.2f}) | {t.images_per_s:.1f} | {speed} | "
                f"{_fmt(ct.first_call_s if ct else None, '.1f')} | {warm} | "
                f"{_fmt(energy.joules_per_image if energy else None, '.4f')} |"
            )
    return lines + [""] + ratio_lines(ok)


def ratio_lines(records: list[Record]) -> list[str]:
    """Mixer-B/16 / ViT-B/16 throughput per compile mode (same size, batch, dtype, device), beside timm's RTX 5090."""
    by: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in records:
        c = r.case
        if c.model not in ("mixer_b16", "vit_b16") or c.attention == "explicit":
            continue
        if c.mode != "infer":
            continue
        by[(_mode(r), c.img_size, r.batch or c.batch, c.dtype, c.device)][c.model] = _time(r).images_per_s
    lines = []
    for (mode, px, batch, dtype, device), rates in sorted(by.items(), key=lambda kv: (kv[0][1], str(kv[0]))):
        if len(rates) < 2:
            continue
        ours = rates["mixer_b16"] / rates["vit_b16"]
        published = TIMM_RTX5090.get(mode)
        theirs = f"{published['mixer_b16'] / published['vit_b16']:.2f}" if published and px == 224 else "-"
        lines.append(f"| {mode} | {px} | {batch} | {dtype} | {device} | {ours:.2f} | {theirs} |")
    if not lines:
        return []
    return [
        "Mixer-B/16 / ViT-B/16 throughput by compile mode (this folder) and timm's published RTX 5090 figures "
        "(AMP, 224 px: eager 3,627 / 3,916 img/s, inductor 5,106 / 4,379): the ratio is per device and per mode.",
        "",
        "| compile | px | batch | dtype | device | Mixer / ViT here | timm RTX 5090 |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: |",
        *lines,
        "",
    ]


def energy_table(records: list[Record]) -> list[str]:
    """Markdown lines of the energy section; [] when no record holds an energy part."""
    with_energy: list[tuple[Record, Energy]] = [
        (r, r.energy) for r in records if r.status == "ok" and r.energy is not None
    ]
    if not with_energy:
        return []
    measured = [(r, e) for r, e in with_energy if e.joules_per_image is not None]
    reasons: dict[str, int] = defaultdict(int)
    for _, e in with_energy:
        if e.joules_per_image is None:
            reasons[str(e.unavailable or "no reason recorded")] += 1
    lines = [
        "## Energy per image (NVML)",
        "",
        "NVML's total-energy counter (millijoules, updated about every 100 ms) read over windows of at least 1 s "
        "that start and end on counter updates, the warm step repeated throughout; joules per image = energy / "
        "(steps x batch). It is the whole GPU's energy, idle power included.",
        "",
    ]
    if measured:
        lines += [
            "| model | px | batch | dtype | compile | img/s | J/img | mean W | window s (steps) |",
            "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r, e in measured:
            c = r.case
            lines.append(
                f"| {r.name} | {c.img_size} | {r.batch or c.batch} | {c.dtype} | {_mode(r)} | "
                f"{_time(r).images_per_s:.1f} | {e.joules_per_image:.4f} | {_fmt(e.mean_watts, '.0f')} | "
                f"{e.window_s:.2f} ({e.steps}) |"
            )
        lines.append("")
    for reason, n in sorted(reasons.items()):
        lines.append(f"- not measured for {n} case{'s' if n != 1 else ''}: {reason}")
    if reasons:
        lines.append("")
    return lines
