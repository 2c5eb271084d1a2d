"""The sweep: grid, max-batch search, OOM handling, progress, bad input, interruption and resume."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench import cli
from bench.measure import timing
from bench.runs import presets, records, sweep
from bench.schema import Case
from helpers import ROOT, TINY_VIT, main_code, run_bench, tiny_cases, tiny_sweep


def test_find_max_batch_against_a_known_limit():
    for limit in (1, 2, 3, 37, 64, 100, 1000):
        calls = []

        def fits(b, limit=limit):
            calls.append(b)  # noqa: B023 (called within this iteration)
            return b <= limit

        assert sweep.find_max_batch(fits) == limit
        assert len(calls) <= 2 * limit.bit_length() + 2  # doubling then bisection, not a linear scan
    assert sweep.find_max_batch(lambda b: False) == 0
    assert sweep.find_max_batch(lambda b: True, limit=512) == 512
    assert sweep.find_max_batch(lambda b: b <= 5, start=16) == 5


def test_quick_grid():
    p = presets.PRESETS["quick"]
    cases = presets.build_grid(
        p.entries, p.resolutions, p.patch_sizes, batch=p.batch, device="cpu", dtypes=p.dtypes["cpu"], modes=p.modes
    )
    assert len(cases) == sum(len(e.resolutions or p.resolutions) for e in p.entries)
    assert len({c.key for c in cases}) == len(cases)
    for entry in p.entries:  # every series spans at least 8x in S (pixels for the convnet)
        sizes = entry.resolutions or p.resolutions
        assert (max(sizes) / min(sizes)) ** 2 >= 8
    assert all(
        c.threads == 1
        for c in presets.build_grid(
            p.entries,
            p.resolutions,
            p.patch_sizes,
            batch=1,
            device="cpu",
            dtypes=["float32"],
            modes=["infer"],
            threads=p.threads,
        )
    )
    resnets = [c for c in cases if c.model.startswith("resnet")]
    assert resnets and all(c.patch_size is None and c.channels_last for c in resnets)
    vits = [c for c in cases if c.model.startswith("vit")]
    assert {c.overrides["attn_backend"] for c in vits} == {"fused", "explicit"}
    # at the largest size the ViT's attention (2 S^2 d per block) outweighs its linear part (12 S d^2): S > 6 d
    d = vits[0].overrides["hidden_dim"]
    S = (max(p.resolutions) // p.patch_sizes[0]) ** 2 + 1
    assert 2 * S * S * d > 3 * 12 * S * d * d
    sweep.validate_cases(cases)


def test_validate_rejects_indivisible_size():
    case = Case("vit_s16", 65, 4, 1, "cpu", "float32", "infer", dict(TINY_VIT))
    with pytest.raises(ValueError, match="vit_s16 at 65 px"):
        sweep.validate_cases([case])


@pytest.mark.slow
def test_oom_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = timing.measure_case

    def measure(case, **kwargs):
        if case.img_size == 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")
        return real(case, **kwargs)

    monkeypatch.setattr(timing, "measure_case", measure)
    log = io.StringIO()
    config = sweep.SweepConfig(
        cases=tuple(tiny_cases(attn_backend="explicit")),
        out=tmp_path,
        preset="test",
        min_run_time=0.01,
        min_runs=2,
        warmup=1,
    )
    found = sweep.run_sweep(config, log=log)
    assert [r.status for r in found] == ["oom", "ok"]
    assert "out of memory" in found[0].error
    ok = found[1]
    assert ok.tokens == (48 // 8) ** 2 + 1 and ok.batch == 1
    assert ok.time.median_s > 0 and ok.memory.method == "cpu_peak_rss"
    assert ok.mfu == pytest.approx(2 * ok.macs * ok.time.images_per_s / ok.roof_flops_per_s)
    env = ok.env
    assert env.torch == torch.__version__ and env.torch_threads >= 1 and env.cpu_model and env.date
    text = log.getvalue()
    assert "case 1/2" in text and "case 2/2" in text and "ETA" in text and "OOM" in text


BAD_INPUTS = {
    "unknown model": (["--models", "mixer_b17"], "unknown model"),
    "indivisible resolution": (["--models", "vit_s16", "--resolutions", "100"], "vit_s16 at 100 px"),
    "negative resolution": (["--resolutions", "-64"], "positive"),
    "unknown dtype": (["--dtype", "float8"], "float8"),
    "max batch on cpu": (["--device", "cpu", "--max-batch"], "--device cuda"),
    "resume without out": (["--resume"], "--resume needs --out"),
    "several batches with peers": (["--peers", "--batch", "1,2"], "one batch"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, capsys):
    argv, message = BAD_INPUTS[name]
    out = tmp_path / "out"
    out_args = [] if "--resume" in argv else ["--out", str(out)]
    assert main_code(["sweep", *argv, *out_args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_unwritable_out_and_cuda_without_gpu(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main_code(["sweep", "--device", "cpu", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert f"{blocker} is a file" in err and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == ""
    if not torch.cuda.is_available():
        assert main_code(["sweep", "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert "no CUDA GPU" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()


def test_existing_results_need_resume(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text("{}\n")  # any content (an empty file holds nothing and blocks nothing)
    assert cli.main(["sweep", "--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


SWEEP_ARGS = tiny_sweep((32, 48, 64, 80))


@pytest.mark.slow
def test_interrupt_then_resume(tmp_path):
    out = tmp_path / "run"
    path = out / "results.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *SWEEP_ARGS, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (path.exists() and path.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stdout
    first = path.read_bytes()
    found, problems = records.read_results(path)
    assert problems == [] and first.endswith(b"\n")
    assert 1 <= len(found) < 4, "the sweep finished before it could be interrupted"

    done = run_bench(*SWEEP_ARGS, "--out", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    assert f"({len(found)} already in" in done.stdout
    assert path.read_bytes().startswith(first)  # nothing rewritten
    found, problems = records.read_results(path)
    keys = [r.key for r in found]
    assert problems == [] and len(keys) == 4 and len(set(keys)) == 4  # every case once: none redone
    assert all(r.status == "ok" for r in found)


def test_attention_option_rewrites_the_presets_vits():
    quick = presets.PRESETS["quick"]
    entries = presets.expand(quick, None, ["explicit"])
    vits = [e for e in entries if e.model.startswith("vit")]
    assert [e.overrides["attn_backend"] for e in vits] == ["explicit"]
    assert vits[0].overrides["hidden_dim"] == 64 and vits[0].name == "vit d64 x2 explicit"
    assert len(entries) == len(quick.entries) - 1
    names = [e.name for e in presets.expand(quick, ["vit_b16", "timm:vit_base_patch16_224", "mixer_b16"], None)]
    assert names == ["vit_b16 fused", "timm:vit_base_patch16_224", "mixer_b16"]


def test_peers_needs_pairs(tmp_path, capsys):
    assert main_code(["sweep", "--peers", "--models", "mixer_b16", "--out", str(tmp_path / "p")]) == 2
    assert "pairs" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_several_batches_are_one_grid_each(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(sweep, "run_sweep", lambda config, **_: ran.append(config) or [])
    argv = ["sweep", "--device", "cpu", "--models", "mixer_s16,resnet18", "--resolutions", "64,96"]
    assert main_code([*argv, "--batch", "1,4", "--no-report", "--out", str(tmp_path / "b")]) == 0
    (config,) = ran
    assert [(c.model, c.img_size, c.batch) for c in config.cases] == [
        (m, s, b) for b in (1, 4) for m in ("mixer_s16", "resnet18") for s in (64, 96)
    ]


def test_a_sweep_and_a_prediction_of_reference_models_import_neither_timm_nor_dynamo():
    """What a sweep does before its first timing (environment, checking the cases, the per-class work) and a
    prediction under autocast stay clear of ``import timm`` (which imports torchvision and torch._dynamo) and of
    torch's Python reference kernels on meta (whose first call imports torch._dynamo): about 3 s of every
    ``mixerbench sweep`` and ``predict`` process."""
    script = """if True:
        import sys
        from bench.analysis import predict
        from bench.measure import env, profile
        from bench.runs import sweep
        from bench.schema import Case
        env.environment("cpu")
        cases = [Case("vit_ti16", 32), Case("mixer_s16", 64), Case("resnet18", 64)]
        sweep.validate_cases(cases)
        for case in cases:
            profile.class_work(case)
        predict.predict_case(Case("vit_b16", 224, batch=8, dtype="float16"), "h100-sxm")
        print(sorted(m for m in ("timm", "torchvision", "torch._dynamo") if m in sys.modules))
    """
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
