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


# -- the calibrated model beside the measured time (GPU records of the device table) ------------------------


@pytest.fixture(scope="module")
def h200_calibrated(tmp_path_factory):
    """Three recorded H200 cases (bfloat16, batch 32), their costs filled and their calibrated predictions."""
    from bench.runs import predictions

    folder = tmp_path_factory.mktemp("h200")
    shutil.copy(ROOT / "results" / "h200-paper" / records.FILENAME, folder / records.FILENAME)
    found, _ = records.read_results(folder / records.FILENAME)
    picked = [
        r for r in found if (r.name, r.case.img_size) in {("mixer_b16", 224), ("vit_b16 fused", 768), ("resnet50", 384)}
    ]
    picked = costs.fill_missing_costs(picked)
    return folder, picked, predictions.predict_records(picked)


def test_gpu_names_map_to_the_device_table_exactly():
    from bench.analysis import predict
    from bench.runs import predictions

    assert predictions.gpu_key("NVIDIA H200") == "h200"
    assert predictions.gpu_key("NVIDIA  GeForce RTX 4090 ") == "rtx-4090"
    assert predictions.gpu_key("NVIDIA H100 PCIe") is None  # another bandwidth and clock than the SXM entry
    assert predictions.gpu_key("NVIDIA GeForce RTX 4090 Laptop GPU") is None
    assert set(predictions.TORCH_NAMES.values()) <= set(predict.load_devices())


def test_h200_report_puts_the_calibrated_prediction_beside_the_measured_time(h200_calibrated):
    from bench import report
    from bench.analysis import predict

    folder, picked, predicted = h200_calibrated
    assert len(picked) == 3 and len(predicted) == 3
    md, _console, _plots, _warnings = report.build(folder, picked, predicted=predicted)
    text = md.splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("| case |") and "roofline ms" in line)
    head, *body = text[start : text.index("", start)]
    columns = [c.strip() for c in head.strip("|").split("|")]
    assert columns[5:12] == [
        "measured ms",
        "predicted ms",
        "predicted / measured - 1",
        "predicted peak GiB",
        "measured peak GiB",
        "roofline ms",
        "measured / roofline",
    ]
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in body[1:]}
    for r in picked:
        # The predicted number is predict_case's for the case at the batch that ran on the table's H200 entry;
        # the measured one and the error are the recorded median's (independent of the model).
        expected = predict.predict_case(r.case.replace(batch=r.batch), "h200")
        cells = [c.strip() for c in rows[f"{r.name} {r.case.mode}", str(r.case.img_size)].strip("|").split("|")]
        assert cells[5] == f"{r.time.median_s * 1e3:.2f}"
        assert cells[6] == f"{expected.step_ms:.2f}"
        assert cells[7] == f"{expected.step_ms / (r.time.median_s * 1e3) - 1:+.0%}"
        assert cells[8] == f"{expected.peak_bytes / 2**30:.2f}" and cells[9] == f"{r.memory.peak_bytes / 2**30:.2f}"
    assert "predicted on **h200**" in md and "median |predicted / measured - 1|" in md


def test_an_unknown_gpu_keeps_the_roofline_alone_and_says_so(h200_calibrated, tmp_path):
    import dataclasses

    from bench import report
    from bench.runs import predictions

    _folder, picked, _predicted = h200_calibrated
    # The H200 NVL (PCIe card, lower clocks) is not the table's H200 SXM; the name is escaped where it is shown.
    renamed = [
        dataclasses.replace(r, env=dataclasses.replace(r.env, device_name="NVIDIA H200 NVL <b>")) for r in picked
    ]
    assert predictions.predict_records(renamed) == {}  # nothing counted, nothing predicted
    md, *_ = report.build(tmp_path, renamed, predicted={})
    assert "- NVIDIA H200 NVL \\<b\\>: not in the device table" in md
    assert "roofline ms" not in md and "| measured ms | predicted ms | measured / predicted |" in md
