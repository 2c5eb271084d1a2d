"""report and compare, from synthetic results whose scaling is known in closed form."""

from __future__ import annotations

import pytest

from bench import cli, report
from bench.analysis.series import fits_of, series_of
from bench.runs.records import read_results
from bench.schema import Case
from helpers import fake_record, write_results

PNG = b"\x89PNG\r\n\x1a\n"
SIZES = (64, 96, 128, 160, 192)
D = 64  # ViT width: per block 12 S d^2 + 2 S^2 d multiply-adds


def record(label, model, overrides, size, tokens, macs, seconds, act_bytes, status="ok"):
    """A made-up record of ``model`` at ``size`` px (patch 4) with the given counts and measurements, timed in three
    blocks 0.2% apart (a deterministic "noise"); any other ``status`` is an "out of memory" that carries its counts."""
    case = Case(model, size, 4, overrides=overrides, label=label)
    if status != "ok":
        return fake_record(case, status=status, error="out of memory", tokens=tokens, macs=macs)
    return fake_record(
        case,
        tokens=tokens,
        macs=macs,
        seconds=seconds,
        wobble=(1.0, 1.002, 0.998),
        activation_bytes=act_bytes,
        roof=1e11,
        mfu=2 * macs / seconds / 1e11,
    )


def synthetic(factor_time=1.0):
    rows = []
    for size in SIZES:
        s_mixer = (size // 4) ** 2
        s_vit = s_mixer + 1
        mixer_macs = 1000 * s_mixer  # exactly linear
        vit_macs = 2 * (12 * s_vit * D * D + 2 * s_vit * s_vit * D)
        rows.append(record("mixer", "mixer_s16", {}, size, s_mixer, mixer_macs, 1e-6 * s_mixer, 2000 * s_mixer))
        for backend, act in (("fused", 3000 * s_vit), ("explicit", 3000 * s_vit + 16 * s_vit * s_vit)):
            rows.append(
                record(
                    f"vit {backend}",
                    "vit_s16",
                    {"attn_backend": backend},
                    size,
                    s_vit,
                    vit_macs,
                    factor_time * vit_macs / 2e10,
                    act,
                )
            )
    rows.append(record("vit explicit", "vit_s16", {"attn_backend": "explicit"}, 224, 3137, 0, 0, 0, status="oom"))
    return rows


def test_report_verdicts_tables_and_plots(tmp_path):
    write_results(tmp_path, synthetic(), ["{broken"])
    md, console, plots, warnings = report.build(tmp_path)
    verdicts = {
        (row.series.label, row.quantity): row.fit.verdict
        for row in fits_of(series_of(read_results(tmp_path / "results.jsonl")[0]))
    }
    assert verdicts[("mixer", "MACs")] == "linear"
    assert verdicts[("mixer", "latency")] == "linear"
    assert verdicts[("mixer", "activation memory")] == "linear"
    assert verdicts[("vit fused", "MACs")] == "quadratic"
    assert verdicts[("vit fused", "latency")] == "quadratic"
    assert verdicts[("vit fused", "activation memory")] == "linear"
    assert verdicts[("vit explicit", "activation memory")] == "quadratic"
    for name in report.PLOTS.values():
        assert (tmp_path / name).read_bytes().startswith(PNG)
    assert set(plots) == set(report.PLOTS.values())
    assert (
        "## Scaling fits" in md
        and "## ViT attention: fused vs explicit" in md
        and "| oom" not in md.split("## Cases")[0]
    )
    assert "oom: out of memory" in md
    assert warnings and f"line {len(synthetic()) + 1}" in warnings[0]
    assert "quadratic" in console and "linear" in console


def test_exact_vit_fit_recovers_the_attention_coefficient(tmp_path):
    write_results(tmp_path, synthetic())
    rows = fits_of(series_of(read_results(tmp_path / "results.jsonl")[0]))
    vit = next(r for r in rows if r.series.label == "vit fused" and r.quantity == "MACs")
    assert vit.fit.b == pytest.approx(2 * 2 * D)  # 2 blocks x 2 S^2 d
    assert vit.fit.crossover_tokens == pytest.approx(6 * D)  # 12 S d^2 = 2 S^2 d at S = 6 d


def test_cmd_report_and_missing_folder(tmp_path, capsys):
    write_results(tmp_path / "a", synthetic())
    assert cli.main(["report", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "report.md").read_text().startswith("# mixerbench sweep report")
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and len(err.strip().splitlines()) == 1


def test_compare_flags_and_exit_codes(tmp_path, capsys):
    write_results(tmp_path / "a", synthetic())
    write_results(tmp_path / "b", synthetic())
    write_results(tmp_path / "slow", synthetic(factor_time=1.5))
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "0 worse, 0 better" in out
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "slow"), "--factor", "1.2"]) == 1
    out = capsys.readouterr().out
    assert "10 worse" in out and " 1.500 " in out
    assert cli.main(["compare", str(tmp_path / "slow"), str(tmp_path / "a"), "--factor", "1.2"]) == 0
    assert "10 better" in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--factor", "0.9"]) == 2
