"""`mixerbench flops`: output formats, fits and verdicts, the cross-check, bad input."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bench.cli import main
from bench.measure import formulas
from bench.runs import counts
from bench.schema import Case
from helpers import ROOT

RECORD_KEYS = {"model", "img_size", "patch_size", "tokens", "params", "macs", "activations"}
FIT_KEYS = {"model", "axis", "a", "b", "c", "crossover_tokens", "verdict"}


def run(capsys, *argv):
    code = main(["flops", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_schema_and_verdicts(capsys):
    code, out, err = run(
        capsys, "--models", "mixer_b16,vit_b16,resnet50", "--resolutions", "224,384,512", "--format", "json"
    )
    assert code == 0
    assert "mixerbench" not in err and "Traceback" not in err  # (torch itself may log a CUDA_HOME note once)
    payload = json.loads(out)
    assert set(payload) == {"records", "fits"}
    assert len(payload["records"]) == 9
    for record in payload["records"]:
        assert RECORD_KEYS <= set(record)
    vit = next(r for r in payload["records"] if r["model"] == "vit_b16" and r["img_size"] == 224)
    assert (vit["tokens"], vit["patch_size"], round(vit["macs"] / 1e9, 2)) == (197, 16, 17.58)
    fits = {f["model"]: f for f in payload["fits"] if f["quantity"] == "macs"}
    for f in fits.values():
        assert FIT_KEYS <= set(f)
    assert (fits["mixer_b16"]["axis"], fits["mixer_b16"]["verdict"], fits["mixer_b16"]["b"]) == (
        "resolution",
        "linear",
        0,
    )
    assert (fits["vit_b16"]["axis"], fits["vit_b16"]["verdict"], fits["vit_b16"]["b"]) == (
        "resolution",
        "quadratic",
        18_432,
    )
    assert fits["vit_b16"]["crossover_tokens"] == pytest.approx(4608, rel=0.02)
    assert fits["vit_b16"]["crossover_resolution"] == pytest.approx(
        16 * (fits["vit_b16"]["crossover_tokens"] - 1) ** 0.5
    )
    assert (fits["resnet50"]["axis"], fits["resnet50"]["verdict"], fits["resnet50"]["crossover_tokens"]) == (
        "pixels",
        "linear",
        None,
    )


def test_patch_size_sweep_gives_a_patch_size_fit(capsys):
    code, out, _ = run(
        capsys,
        "--models",
        "vit_s16,resnet18",
        "--resolutions",
        "224",
        "--patch-sizes",
        "14,16,28,32",
        "--format",
        "json",
    )
    assert code == 0
    payload = json.loads(out)
    assert [(r["model"], r["patch_size"]) for r in payload["records"]] == [
        ("vit_s16", 14),
        ("vit_s16", 16),
        ("vit_s16", 28),
        ("vit_s16", 32),
        ("resnet18", None),
    ]
    (f,) = payload["fits"]  # one resolution: no resolution fit; the convnet has no patch
    assert (f["model"], f["axis"], f["img_size"], f["b"], f["verdict"]) == (
        "vit_s16",
        "patch_size",
        224,
        2 * 12 * 384,
        "quadratic",
    )


def test_fewer_than_three_token_counts_give_no_fit(capsys):
    code, out, _ = run(capsys, "--models", "vit_ti16", "--resolutions", "224,448", "--format", "json")
    assert code == 0
    assert json.loads(out)["fits"] == []


def test_table(capsys):
    code, out, _ = run(capsys, "--models", "mixer_s32,vit_ti16", "--resolutions", "224,448,672")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["model", "img", "patch", "tokens"]
    assert any(line.startswith("vit_ti16") and line.rstrip().endswith("quadratic") for line in lines)
    assert any(line.startswith("mixer_s32") and line.rstrip().endswith("linear") for line in lines)
    assert "uncounted" in out and "aten::gelu" in out


def test_csv(capsys):
    code, out, _ = run(capsys, "--models", "resnet18", "--resolutions", "224,256", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["img_size"] for r in rows] == ["224", "256"]
    assert rows[0]["patch_size"] == "" and rows[0]["tokens"] == ""
    assert int(rows[0]["macs"]) == formulas.closed_form(__import__("architectures").get_config("resnet18")).total


def test_check_with_fvcore_passes(capsys):
    code, out, _ = run(
        capsys, "--models", "vit_ti16,resnet18", "--resolutions", "64", "--check", "--fvcore", "--format", "json"
    )
    assert code == 0
    checks = json.loads(out)["checks"]
    assert len(checks) == 2
    for c in checks:
        assert c["ok"] and c["counter"] == c["flop_counter_mode"] == c["closed_form"] == c["fvcore"]


def test_check_fails_when_a_counter_disagrees(capsys, monkeypatch):
    real = formulas.closed_form

    def off_by_two_percent(config):
        cf = real(config)
        return formulas.ClosedForm(matmul=int(cf.matmul * 1.02), norm=cf.norm)

    monkeypatch.setattr(formulas, "closed_form", off_by_two_percent)
    code, out, err = run(capsys, "--models", "vit_ti16", "--resolutions", "224", "--check")
    assert code == 1
    assert "FAIL" in out
    assert "disagree (exact agreement required)" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "vit_b17"], "unknown model 'vit_b17'"),
        (["--models", "timm:not_a_model"], "unknown timm model"),
        (["--models", "vit_b16", "--resolutions", "200"], "not divisible by patch size 16"),
        (["--models", "vit_b16", "--resolutions", "224", "--patch-sizes", "15"], "not divisible by patch size 15"),
        (["--resolutions", ""], "comma-separated list"),
        (["--resolutions", "224,,448"], "comma-separated list"),
        (["--resolutions", "224,abc"], "comma-separated list"),
        (["--patch-sizes", "0"], "must be positive"),
        (["--models", ","], "comma-separated list"),
        (["--format", "xml"], "invalid choice"),
        (["--fvcore"], "--fvcore only makes sense with --check"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    try:
        code = main(["flops", *argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_default_resolutions_skip_what_a_patch_does_not_divide():
    cases = counts.plan(["vit_h14", "vit_b16"], None, None)
    assert [c.img_size for c in cases if c.model == "vit_h14"] == [224, 448, 672, 896]
    assert [c.img_size for c in cases if c.model == "vit_b16"] == list(counts.DEFAULT_RESOLUTIONS)


def test_check_demands_exact_agreement(monkeypatch):
    from bench.measure import counting
    from bench.runs import counts

    records = counts.count_cases([Case("mixer_s32", 224)])
    assert counts.check(records, with_fvcore=False)[0].ok
    real = counting.flop_counter_macs
    monkeypatch.setattr(counting, "flop_counter_macs", lambda *a, **k: real(*a, **k) + 1)  # one MAC in ~1e9
    row = counts.check(records, with_fvcore=False)[0]
    assert not row.ok and 0 < row.max_rel_diff < 1e-8


# Byte-for-byte guards of the output as it was before counting reused kernels, models and processes (produced at
# commit e0326fa; see tests/data/flops/README.md). The figures themselves are checked against independent
# references in tests/measure/test_counting.py, test_formulas.py and test_cost.py.
SMALL = ["--models", "mixer_s32,vit_ti16,resnet18", "--resolutions", "224,448,512"]


def test_output_is_as_before_for_three_models(capsys):
    code, out, err = run(capsys, *SMALL)
    assert (code, err) == (0, "")
    assert out == (ROOT / "tests/data/flops/small.txt").read_text()


@pytest.mark.slow
def test_default_output_is_as_before(capsys):
    code, out, err = run(capsys)
    assert (code, err) == (0, "")
    assert out == (ROOT / "tests/data/flops/default.txt").read_text()


def _cases():
    return counts.plan(["vit_ti16", "resnet18", "mixer_s32"], [224], None)  # three: the last two in workers


def test_workers_give_what_one_process_gives():
    from bench.runs import costs

    serial = counts.count_cases(_cases())
    priced = costs.price(serial, ["fused", "explicit"], ["infer", "train"])
    for workers in (1, 2):
        assert counts.count_and_price(_cases(), ["fused", "explicit"], ["infer", "train"], workers=workers) == (
            serial,
            priced,
        )


@pytest.mark.parametrize("submitted", ["before", "after"])
def test_workers_that_cannot_start_leave_the_cases_to_this_process(monkeypatch, submitted):
    # As in a process that compiled a step before: torch refuses backward passes in processes forked from it. The
    # pool breaks after the cases were submitted, or while they are ("before": each submission waits for the break).
    import concurrent.futures
    import time

    from bench.runs import costs

    def cannot() -> None:
        raise RuntimeError("Unable to handle autograd's threading in combination with fork-based multiprocessing")

    serial = counts.count_cases(_cases())
    priced = costs.price(serial, ["fused"], ["infer", "train"])
    monkeypatch.setattr(counts, "_can_fork", cannot)
    if submitted == "before":
        submit = concurrent.futures.ProcessPoolExecutor.submit

        def slow(*args, **kwargs):
            future = submit(*args, **kwargs)
            time.sleep(1)  # the first submission started the workers: they fail meanwhile
            return future

        monkeypatch.setattr(concurrent.futures.ProcessPoolExecutor, "submit", slow)
    assert counts.count_and_price(_cases(), ["fused"], ["infer", "train"], workers=2) == (serial, priced)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_case_that_cannot_be_counted_is_reported_before_any_that_cannot_be_priced(monkeypatch, workers):
    from bench.measure import counting
    from bench.runs import costs

    real_count, real_price = counting.count, costs.price

    def count(case):
        if case.model == "resnet18":
            raise ValueError("cannot count")
        return real_count(case)

    def price(records, attentions, modes):
        if records[0].model == "vit_ti16":
            raise ValueError("cannot price")
        return real_price(records, attentions, modes)

    monkeypatch.setattr(counting, "count", count)
    monkeypatch.setattr(costs, "price", price)
    with pytest.raises(ValueError, match="resnet18 at 224 px: cannot count"):
        counts.count_and_price(_cases(), None, ["infer"], workers=workers)
    with pytest.raises(ValueError, match="cannot price"):
        counts.count_and_price(_cases()[:1], None, ["infer"], workers=workers)
