"""`mixerbench predict`: the JSON it prints, its files, and its one-line errors (in process; counting on meta)."""

from __future__ import annotations

import json

from bench import schema
from helpers import ROOT, main_code


def test_json_is_one_prediction_per_case_and_gpu_labelled_as_predicted(capsys):
    argv = ["predict", "--models", "resnet18,timm:resnet18", "--resolutions", "64", "--batch", "8"]
    assert main_code([*argv, "--gpu", "rtx-4090", "--gpu", "l4", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert {"case", "gpu", "step_ms", "images_per_s", "peak_bytes", "fits_in_memory", "class_share"} <= set(first)
    assert first["predicted"] is True and "leave-one-device-out" in first["error"]
    p = schema.decode_object(schema.StepPrediction, first)
    assert p.case is not None and p.case.batch == 8 and p.case.dtype == "float16" and p.gpu == "rtx-4090"
    assert abs(p.images_per_s * p.step_ms / 1e3 - 8) < 1e-9
    assert abs(sum(p.class_share.values()) - 1) < 1e-9
    assert [json.loads(line)["gpu"] for line in lines] == ["rtx-4090", "l4"] * 2


def test_an_unknown_gpu_is_one_line_naming_the_known_ones(capsys):
    assert main_code(["predict", "--models", "resnet18", "--resolutions", "64", "--gpu", "rtx-9999"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rtx-9999" in err and "rtx-4090" in err and "h100-sxm" in err


def test_a_bad_device_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "gpus.json"
    bad.write_text('{"format": 1, "devices": {"x": {"name": "x"}}}')
    assert main_code(["predict", "--devices", str(bad), "--list-devices"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "lacks" in err


def test_out_writes_the_table_and_the_plot_with_the_crossovers(tmp_path, capsys):
    out = tmp_path / "pred"
    argv = ["predict", "--models", "mixer_s16,vit_s16", "--resolutions", "64,128,256", "--batch", "4"]
    assert main_code([*argv, "--gpu", "h100-sxm", "--out", str(out)]) == 0
    text = (out / "prediction.md").read_text()
    assert "not a measurement" in text and "Validated error" in text
    assert "slower than mixer_s16" in text and "attention over half of the step" in text
    assert (out / "predicted_throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert "Predicted, not measured" in capsys.readouterr().out


def test_out_on_a_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert main_code(["predict", "--models", "resnet18", "--resolutions", "64", "--out", str(taken)]) == 2
    assert taken.read_text() == "x"


def test_cpu_results_add_a_cpu_device_from_the_measured_roofs(capsys):
    """results/cpu-quick-v3 measured its float32 matmul roof and copy bandwidth: the `cpu` device takes them."""
    from bench.analysis import predict

    folder = ROOT / "results" / "cpu-quick-v3"
    argv = ["predict", "--cpu-results", str(folder), "--list-devices"]
    assert main_code(argv) == 0
    assert "| cpu |" in capsys.readouterr().out
    records, _ = schema.read_results(folder / schema.RESULTS_FILENAME)
    cpu = predict.cpu_device(records)
    assert cpu.flops["float32"] == max(r.roof_flops_per_s for r in records if r.case.dtype == "float32")
    assert cpu.bandwidth == max(r.copy_bytes_per_s for r in records)
    assert main_code(["predict", "--cpu-results", str(ROOT / "results"), "--list-devices"]) == 2
