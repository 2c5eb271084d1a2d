"""Compile modes: the warm-up until steady (fake clock), which device runs which mode, and one real compile.

The real compile (mode "default", a one-block ViT on the CPU, about a minute here) is
the only one: reduce-overhead and max-autotune are refused on the CPU (their CUDA runs
are in tests/measure/test_cuda.py, skipped without a GPU).
"""

from __future__ import annotations

import pytest

from bench import cli
from bench.measure import compiling
from helpers import TINY_VIT


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scripted(clock: Clock, durations: list[float]):
    """A step whose n-th call takes durations[n] (the last one repeated)."""
    calls = []

    def step():
        clock.now += durations[min(len(calls), len(durations) - 1)]
        calls.append(1)

    return step, calls


def test_the_first_call_and_the_warm_up_are_timed_apart_until_steady():
    clock = Clock()
    # compile (5 s), two slow steps (CUDA graphs recording, caches), then steady at 0.1 s
    step, calls = scripted(clock, [5.0, 0.5, 0.2, 0.105, 0.1, 0.1, 0.1])
    ct = compiling.warm_up(step, "reduce-overhead", steps=1, clock=clock)
    assert ct.mode == "reduce-overhead"
    assert ct.first_call_s == pytest.approx(5.0)
    # steady once the last 3 are within 10 % of their median: 0.105, 0.1, 0.1 (steps 2..6 after the first call)
    assert ct.warmup_steps == 5
    assert ct.warmup_s == pytest.approx(0.5 + 0.2 + 0.105 + 0.1 + 0.1)
    assert len(calls) == 1 + ct.warmup_steps


def test_the_warm_up_runs_at_least_the_steps_asked_for():
    clock = Clock()
    step, _ = scripted(clock, [2.0, 0.1])
    ct = compiling.warm_up(step, "default", steps=7, clock=clock)
    assert ct.warmup_steps == 7


def test_a_step_time_that_never_settles_is_bounded():
    clock = Clock()
    step, calls = scripted(clock, [1.0] + [0.1, 0.2] * 100)
    ct = compiling.warm_up(step, "default", steps=1, clock=clock, max_steps=20, max_s=1e9)
    assert ct.warmup_steps == 20 and len(calls) == 21
    clock = Clock()
    step, _ = scripted(clock, [1.0] + [0.1, 0.2] * 100)
    assert compiling.warm_up(step, "default", clock=clock, max_steps=1000, max_s=3.0).warmup_s == pytest.approx(
        3.0, abs=0.2
    )


def test_eager_warms_up_as_before_and_records_no_compile_time():
    clock = Clock()
    step, calls = scripted(clock, [0.1])
    assert compiling.warm_up(step, "none", steps=3, clock=clock) is None
    assert len(calls) == 3


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_only_modes_are_refused_on_the_cpu(mode):
    with pytest.raises(ValueError, match=mode):
        compiling.check_mode("cpu", mode)
    compiling.check_mode("cuda", mode)


def test_modes_and_the_old_bool():
    assert [compiling.normalise(m) for m in (False, True, "none", "max-autotune")] == [
        "none",
        "default",
        "none",
        "max-autotune",
    ]
    with pytest.raises(ValueError, match="compile mode must be one of"):
        compiling.normalise("fast")
    compiling.check_mode("cpu", "default")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["sweep", "--compile", "fast"], "expected a comma-separated list of none, default"),
        (["sweep", "--device", "cpu", "--compile", "default,reduce-overhead"], "CUDA graphs"),
        (["sweep", "--device", "cpu", "--compile", "max-autotune"], "max-autotune"),
    ],
)
def test_the_command_line_refuses_modes_in_one_line(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(argv + ["--out", str(tmp_path / "out")])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err
    assert not (tmp_path / "out").exists()


def test_compile_is_an_axis_of_the_grid():
    args = cli.build_parser().parse_args(["sweep", "--compile"])
    assert args.compile == ["default"]
    args = cli.build_parser().parse_args(["sweep", "--compile", "none,default"])
    from bench.runs import presets

    preset = presets.PRESETS["quick"]
    cases = presets.build_grid(
        presets.expand(preset)[:1],
        [64, 96],
        [4],
        batch=1,
        device="cpu",
        dtypes=["float32"],
        modes=["infer"],
        compiles=args.compile,
    )
    assert [(c.compile, c.img_size) for c in cases] == [("none", 64), ("none", 96), ("default", 64), ("default", 96)]
    assert len({c.key for c in cases}) == 4  # the mode is in the key


def test_a_real_compile_on_the_cpu_is_warmed_up_apart_and_profiled_without_attribution():
    torch = pytest.importorskip("torch")
    from torch._dynamo.utils import counters

    from bench.measure import profile, timing

    model = timing.build_model("vit_s16", 32, 8, overrides=TINY_VIT)
    step = timing.make_step(model, batch=2, img_size=32, device="cpu", compile="default")
    before = counters["stats"]["unique_graphs"]
    ct = compiling.warm_up(step, "default", steps=2)
    compiled_graphs = counters["stats"]["unique_graphs"] - before
    assert compiled_graphs >= 1  # dynamo captured the forward (eager would capture nothing)
    assert ct.mode == "default" and ct.warmup_steps >= 2 and ct.first_call_s > 0

    p = profile.profile_step(model, step, "cpu", "default")
    assert counters["stats"]["unique_graphs"] - before == compiled_graphs  # profiling did not compile again
    assert p.unattributed and "torch.compile (default)" in p.unattributed
    assert p.unattributed_cpu_s > 0  # the fused kernels' time, under the compiled graph's call
    assert p.attention_kernel is not None  # the fused attention op still carries its aten name

    eager = profile.profile_step(model, timing.make_step(model, batch=2, img_size=32, device="cpu"), "cpu")
    assert eager.unattributed is None and eager.cpu_s["attention"] > 0
    torch._dynamo.reset()
