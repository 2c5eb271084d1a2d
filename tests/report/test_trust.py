"""Numbers a reader can trust (issue 19, classes 6 and 7): strict fits.json that names where each fit ran,
a roof that is a roof, each verdict beside what decided it, and exact fits of what repeats exactly."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from bench import cli
from bench.analysis.series import fits_of, series_of
from bench.report import verdicts
from bench.schema import Env, Profile
from helpers import mixer_record, write_results


def record(size: int, *, threads: int | None = None, peak: int | None = None, mfu: float = 0.1, label="mixer"):
    """A made-up Mixer whose latency and activation memory are linear in S with a small deterministic wobble;
    with ``peak``, a profile whose tensor peak is ``peak`` bytes at every profiled step."""
    tokens = (size // 4) ** 2
    profile = None
    if peak is not None:
        cpu_s = {"attention": 0.0, "data_movement": 1e-5, "dense": 1e-3, "norm_elementwise": 1e-4, "token_mixing": 1e-4}
        profile = Profile(
            steps=3,
            cpu_s=cpu_s,
            cpu_s_rounds={k: (v, v, v) for k, v in cpu_s.items()},
            tensor_peak_bytes_rounds=(peak, peak, peak),
        )
    return mixer_record(
        size,
        label=label,
        threads=threads,
        seconds=1e-6 * tokens * (1 + 0.01 * (size % 3)),
        activation_bytes=2000 * tokens + 4096 * (size % 5),
        mfu=mfu,
        env=Env(device="cpu", device_name="test cpu", cpu_model="test cpu", torch_threads=threads or 2),
        profile=profile,
    )


def test_fits_json_is_strict_json(tmp_path, monkeypatch):
    rows = fits_of(series_of([record(s) for s in (64, 96, 128)]))
    real = verdicts.fit_object
    monkeypatch.setattr(
        verdicts,
        "fit_object",
        lambda row: dataclasses.replace(real(row), quadratic_share=math.nan, share_ci=(math.inf, 1.0)),
    )
    path = verdicts.write_fits_json(tmp_path, rows)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data[0]["quadratic_share"] is None and data[0]["share_ci"] == [None, 1.0]


def test_every_fit_names_its_machine_and_threads(tmp_path):
    out = write_results(tmp_path / "out", [record(s, threads=t) for t in (1, 2) for s in (64, 96, 128)])
    assert cli.main(["report", str(out)]) == 0
    fits = json.loads((out / "fits.json").read_text())
    latency = [f for f in fits if f["quantity"] == "latency"]
    assert sorted(f["threads"] for f in latency) == [1, 2]
    assert all(f["machine"] for f in fits)


def test_profiled_peaks_identical_at_every_repetition_are_fitted_exactly():
    """Three sizes of an exactly linear peak (bytes = 4096 * S + 10^6): linear, decided exactly."""
    records = [record(s, peak=4096 * (s // 4) ** 2 + 10**6) for s in (64, 96, 128)]
    (row,) = [r for r in fits_of(series_of(records)) if r.quantity == "activation memory"]
    assert row.verdict == "linear" and row.fit.b == 0 and row.fit.a == 4096 and row.fit.c == 10**6
    assert verdicts.decided_by(row).startswith("exact")


def test_tables_show_the_curve_verdict_beside_its_share_and_what_decided(tmp_path):
    out = write_results(tmp_path / "out", [record(s) for s in (64, 96, 128, 160)])
    assert cli.main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    fits = text.split("## Scaling fits")[1].split("\n\n")[2].splitlines()
    assert "the curve's verdict" in fits[0] and "decided verdict (by)" in fits[0]
    latency = next(line for line in fits if "| latency |" in line)
    cells = [c.strip() for c in latency.strip("|").split(" | ")]
    assert cells[-2] in ("linear", "quadratic", "inconclusive")  # the curve's own verdict, beside its share
    assert cells[-1].endswith("(curve)")  # and what decided the verdict


def test_a_share_outside_0_100_is_explained():
    assert verdicts.share_text(1.18, (0.59, 1.77)).endswith("†")
    assert not verdicts.share_text(0.31, (0.1, 0.5)).endswith("†")
    assert "not a fraction" in verdicts.SHARE_OUTSIDE


def test_an_mfu_above_100_percent_has_a_note(tmp_path):
    out = write_results(tmp_path / "out", [record(s, mfu=1.05 if s == 128 else 0.5) for s in (64, 96, 128)])
    assert cli.main(["report", str(out)]) == 0
    assert "**MFU above 100%** in 1 case" in (out / "report.md").read_text()


def test_the_roof_is_the_best_of_its_kernels(monkeypatch):
    """matmul_roof times several kernels and returns the fastest (a conv beat the 1024^2 matmul here)."""
    from bench.measure import timing

    seconds = {"matmul": 1.0, "MLP": 0.5, "conv": 0.01}
    timed = []

    class Fake:
        def __init__(self, label):
            self.median_s = seconds[label.split()[0]]

    def fake_time_step(step, *, label, **kw):
        timed.append(label)
        return Fake(label)

    monkeypatch.setattr(timing, "time_step", fake_time_step)
    kernels = timing.roof_kernels("cpu", "float32", size=64)
    assert len(timed) == 3 and set(kernels) == set(timed)
    conv = next(k for k in kernels if k.startswith("conv"))
    assert timing.matmul_roof("cpu", "float32", size=64) == pytest.approx(kernels[conv]) == max(kernels.values())
    assert kernels[conv] == pytest.approx(2 * 8 * 8 * 8 * 9 * 56 * 56 / 0.01)  # FLOPs of the 3x3 conv, closed form
