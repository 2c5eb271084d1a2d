"""The report's compile-mode and energy tables, from synthetic records whose figures are known."""

from __future__ import annotations

import json

from bench import report
from bench.report import compile_energy


def line(model, compile_mode, ms, *, energy=None, compile_time=None, size=224, attn=None):
    seconds = ms / 1e3
    overrides = {"attn_backend": attn} if attn else {}
    r = {
        "case": {
            "model": model,
            "img_size": size,
            "patch_size": 16 if model != "resnet50" else None,
            "batch": 32,
            "device": "cuda",
            "dtype": "bfloat16",
            "mode": "infer",
            "overrides": overrides,
            "channels_last": model == "resnet50",
            "compile": compile_mode,
        },
        "label": model,
        "status": "ok",
        "tokens": (size // 16) ** 2 + (model == "vit_b16") if model != "resnet50" else None,
        "macs": 10**10,
        "batch": 32,
        "env": {"device": "cuda", "device_name": "test gpu"},
        "roof_flops_per_s": 1e15,
        "time": {
            "median_s": seconds,
            "iqr_s": 0.01 * seconds,
            "mean_s": seconds,
            "runs": 3,
            "number_per_run": 1,
            "batch": 32,
            "warmup": 1,
            "times_s": [seconds] * 3,
        },
        "memory": {
            "method": "cuda_max_memory_allocated",
            "weights_bytes": 10**8,
            "activation_bytes": 10**8,
            "peak_bytes": 3 * 10**8,
            "baseline_bytes": 0,
        },
    }
    if energy is not None:
        r["energy"] = energy
    if compile_time is not None:
        r["compile_time"] = compile_time
    return r


UNAVAILABLE = {
    "joules_per_image": None,
    "mean_watts": None,
    "window_s": 0.0,
    "steps": 0,
    "unavailable": "this GPU has no total-energy counter (NVML: Not Supported; it needs Volta or newer)",
}


def measured(j):
    return {"joules_per_image": j, "mean_watts": 400.0, "window_s": 1.04, "steps": 90, "unavailable": None}


def folder(tmp_path, lines):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return tmp_path


def test_compile_table_speedups_compile_time_and_timm_ratio(tmp_path):
    ct = {"mode": "default", "first_call_s": 42.0, "warmup_s": 1.5, "warmup_steps": 6}
    out = folder(
        tmp_path,
        [
            line("mixer_b16", "none", 10.0, energy=UNAVAILABLE),
            line("mixer_b16", "default", 8.0, energy=measured(0.1234), compile_time=ct),
            line("vit_b16", "none", 8.0, energy=UNAVAILABLE, attn="fused"),
            line("vit_b16", "default", 8.0, energy=measured(0.2), compile_time=ct, attn="fused"),
        ],
    )
    md, _, _, warnings = report.build(out)
    assert not warnings
    rows = [r for r in md.splitlines() if r.startswith("| mixer_b16 | 224 | 32 | bfloat16 | infer |")]
    assert rows[0].split(" | ")[5:9] == ["none", "10.00 (0.10)", "3200.0", "1.00x"]
    assert rows[1].split(" | ")[5:12] == ["default", "8.00 (0.08)", "4000.0", "1.25x", "42.0", "1.50 (6)", "0.1234 |"]
    # Mixer / ViT throughput: eager 8/10 = 0.80, compiled 8/8 = 1.00; timm RTX 5090: 3627/3916, 5106/4379
    assert "| none | 224 | 32 | bfloat16 | cuda | 0.80 | 0.93 |" in md
    assert "| default | 224 | 32 | bfloat16 | cuda | 1.00 | 1.17 |" in md
    # energy: the measured cases, then the others counted by reason
    assert "| mixer_b16 | 224 | 32 | bfloat16 | default | 4000.0 | 0.1234 | 400 | 1.04 (90) |" in md
    assert "- not measured for 2 cases: this GPU has no total-energy counter (NVML: Not Supported" in md


def test_an_eager_folder_has_no_compile_section_and_says_why_energy_is_missing(tmp_path):
    cpu = dict(UNAVAILABLE, unavailable="a CPU case (NVML's energy counter is read on NVIDIA GPUs only)")
    out = folder(tmp_path, [line("mixer_b16", "none", 10.0, energy=cpu)])
    md, *_ = report.build(out)
    assert "## Compile modes" not in md
    assert "- not measured for 1 case: a CPU case (NVML's energy counter is read on NVIDIA GPUs only)" in md


def test_records_without_energy_have_no_energy_section(tmp_path):
    md, *_ = report.build(folder(tmp_path, [line("mixer_b16", "none", 10.0)]))
    assert "## Energy" not in md


def test_published_ratios_are_timms():
    # timm results-imagenet benchmark, RTX 5090, AMP: Mixer-B/16 1.41x and ViT-B/16 1.12x faster compiled
    eager, compiled = compile_energy.TIMM_RTX5090["none"], compile_energy.TIMM_RTX5090["default"]
    assert round(compiled["mixer_b16"] / eager["mixer_b16"], 2) == 1.41
    assert round(compiled["vit_b16"] / eager["vit_b16"], 2) == 1.12


def profiled(size, unattributed):
    s = (size // 16) ** 2
    line_ = line(
        "mixer_b16",
        "default",
        10.0 * s / 196,
        compile_time={"mode": "default", "first_call_s": 1.0, "warmup_s": 0.1, "warmup_steps": 3},
        size=size,
    )
    classes = ("attention", "token_mixing", "dense", "norm_elementwise", "data_movement")
    cpu = {
        "attention": 0.0,
        "token_mixing": 0.001 * s,
        "dense": 0.004 * s,
        "norm_elementwise": 0.0005 * s,
        "data_movement": 0.0001 * s,
    }
    line_["time"]["rounds_s"] = [[line_["time"]["median_s"]]] * 3
    line_["profile"] = {
        "steps": 3,
        "cpu_s": cpu,
        "cpu_s_rounds": {c: [cpu[c] * w for w in (1.0, 1.01, 0.99)] for c in classes},
        "work": {
            "attention": 0,
            "token_mixing": 100 * s,
            "dense": 400 * s,
            "norm_elementwise": 10 * s,
            "data_movement": 0,
        },
        "unattributed": unattributed,
    }
    return line_


def test_a_compiled_series_is_decided_by_its_curve_and_says_why(tmp_path):
    why = "torch.compile (default): 40% of the profiled device time is in fused kernels without an operator name"
    md, *_ = report.build(folder(tmp_path / "compiled", [profiled(s, why) for s in (224, 288, 384, 448)]))
    row = next(
        r
        for r in md.splitlines()
        if r.startswith("| mixer_b16 p16 b32 cuda bfloat16 infer compiled default")
        and "| latency |" in r
        and "| curve |" in r
    )
    assert f"no per-operator attribution ({why}): verdict from the curve" in row
    # the same profiles without the mark are attributed (the control: the fall-back is the mark's doing)
    md, *_ = report.build(folder(tmp_path / "eager", [profiled(s, None) for s in (224, 288, 384, 448)]))
    assert "| per-operator attribution |" in md and "no per-operator attribution" not in md
