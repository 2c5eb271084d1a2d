"""The roofline section: the prediction rule by hand, the H200 records priced on meta by the runs layer, and a
report that never counts a cost itself."""

from __future__ import annotations

import shutil

import pytest

from bench.report import roofline
from bench.runs import costs, records
from helpers import ROOT


def test_each_operator_is_priced_at_the_larger_of_compute_and_memory_time():
    kernels = [
        ["dense", "aten::mm", 2_000, 100, 3],  # compute: 2 s vs 1 s -> 2 s, three calls
        ["norm_elementwise", "aten::gelu", 10, 400, 2],
    ]  # memory: 4 s vs 0.01 s
    p = roofline.predict(kernels, roof=1_000.0, bandwidth=100.0)
    assert p.predicted_s == pytest.approx(3 * 2 + 2 * 4)
    assert p.by_class["dense"].bound == "compute"
    assert p.by_class["norm_elementwise"].bound == "memory"


def test_h200_report_has_the_roofline_table_and_plot(tmp_path):
    shutil.copy(ROOT / "results" / "h200-paper" / records.FILENAME, tmp_path / records.FILENAME)
    found, _ = records.read_results(tmp_path / records.FILENAME)
    found = costs.fill_missing_costs(found)  # written before the cost existed: counted on meta here
    mixer = [r for r in found if r.name == "mixer_b16"][:1] + [r for r in found if r.name == "mixer_b16"][-1:]
    vit = [r for r in found if r.case.model == "vit_b16" and r.case.overrides.get("attn_backend") == "fused"][-1:]
    md, plots = roofline.section(mixer + vit, tmp_path)
    assert plots == [roofline.PLOT] and (tmp_path / roofline.PLOT).stat().st_size > 10_000
    text = "\n".join(md)
    assert "nominal H200" in text and "| mixer_b16 infer | 768 |" in text
    # Independent anchor: the recorded MFU (MACs / time / measured roof) of the same records.
    rows = {(row.record.name, row.record.case.img_size): row for row in roofline.rows_of(mixer + vit)}
    for (_name, _size), row in rows.items():
        assert row.measured_s > row.predicted_s  # the roofline is a lower bound
    # Mixer is further from its roofline than ViT, the memory-bound part says why.
    assert (
        rows["mixer_b16", 768].measured_s / rows["mixer_b16", 768].predicted_s
        > rows["vit_b16 fused", 768].measured_s / rows["vit_b16 fused", 768].predicted_s
    )


def _h200_sample(tmp_path):
    shutil.copy(ROOT / "results" / "h200-paper" / records.FILENAME, tmp_path / records.FILENAME)
    found, _ = records.read_results(tmp_path / records.FILENAME)
    return [r for r in found if r.name == "mixer_b16"][:2]


def test_report_never_counts_a_cost(tmp_path, monkeypatch):
    import bench.measure.cost as measure_cost
    from bench import report

    sample = _h200_sample(tmp_path)
    assert all(r.cost is None for r in sample)  # older than the cost
    filled = costs.fill_missing_costs(sample)
    assert all(r.cost is not None for r in filled)

    def refuse(*_args, **_kwargs):
        raise AssertionError("the report counted a cost")

    for name in ("cost", "cost_or_none", "count_case", "count_case_or_none"):
        if hasattr(measure_cost, name):
            monkeypatch.setattr(measure_cost, name, refuse)
    assert costs.fill_missing_costs(filled) == filled  # nothing to count: the step is free
    md, _console, plots, _warnings = report.build(tmp_path, filled)
    assert "## Roofline: where the time goes" in md and roofline.PLOT in plots
    assert "carry no cost" not in md
    # Records without a cost: left out of the roofline, counted in one line, still nothing counted.
    md, _console, plots, _warnings = report.build(tmp_path, sample)
    assert "- 2 records carry no cost" in md and roofline.PLOT not in plots
    assert "| mixer_b16 infer |" not in md
