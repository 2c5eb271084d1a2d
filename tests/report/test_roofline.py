"""The roofline section: the prediction rule by hand, and the H200 records priced on meta."""

from __future__ import annotations

import shutil

import pytest

from bench.report import roofline
from bench.runs import records as results
from helpers import ROOT


def test_each_operator_is_priced_at_the_larger_of_compute_and_memory_time():
    kernels = [
        ["dense", "aten::mm", 2_000, 100, 3],  # compute: 2 s vs 1 s -> 2 s, three calls
        ["norm_elementwise", "aten::gelu", 10, 400, 2],
    ]  # memory: 4 s vs 0.01 s
    p = roofline.predict(kernels, roof=1_000.0, bandwidth=100.0)
    assert p["predicted_s"] == pytest.approx(3 * 2 + 2 * 4)
    assert p["by_class"]["dense"]["bound"] == "compute"
    assert p["by_class"]["norm_elementwise"]["bound"] == "memory"


def test_h200_report_has_the_roofline_table_and_plot(tmp_path):
    shutil.copy(ROOT / "results" / "h200-paper" / results.FILENAME, tmp_path / results.FILENAME)
    records, _ = results.read_results(tmp_path / results.FILENAME)
    mixer = [r for r in records if r.name == "mixer_b16"][:1] + [r for r in records if r.name == "mixer_b16"][-1:]
    vit = [r for r in records if r.case.model == "vit_b16" and r.case.overrides.get("attn_backend") == "fused"][-1:]
    md, plots = roofline.section(mixer + vit, tmp_path)
    assert plots == [roofline.PLOT] and (tmp_path / roofline.PLOT).stat().st_size > 10_000
    text = "\n".join(md)
    assert "nominal H200" in text and "| mixer_b16 infer | 768 |" in text
    # Independent anchor: the recorded MFU (MACs / time / measured roof) of the same records.
    rows = {(row["record"].name, row["record"].case.img_size): row for row in roofline.rows_of(mixer + vit)}
    for (_name, _size), row in rows.items():
        assert row["measured_s"] > row["predicted_s"]  # the roofline is a lower bound
    # Mixer is further from its roofline than ViT, the memory-bound part says why.
    assert (
        rows["mixer_b16", 768]["measured_s"] / rows["mixer_b16", 768]["predicted_s"]
        > rows["vit_b16 fused", 768]["measured_s"] / rows["vit_b16 fused", 768]["predicted_s"]
    )
