"""bench.measure.timing: steps, the timer's statistics, MFU bookkeeping, dtype checks; CUDA paths skip without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.measure import timing
from bench.schema import Case
from helpers import TINY_VIT

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_time_step_statistics_match_numpy():
    calls = []
    t = timing.time_step(lambda: calls.append(1), batch=4, min_run_time=0.01, warmup=3, min_runs=5)
    assert t.runs == len(t.times_s) >= 5
    assert t.median_s == pytest.approx(float(np.median(t.times_s)))
    q1, q3 = np.percentile(t.times_s, [25, 75])
    assert t.iqr_s == pytest.approx(q3 - q1)
    assert t.images_per_s == pytest.approx(4 / t.median_s)
    # warm-up + every timed step ran the callable
    assert len(calls) >= 3 + t.runs * t.number_per_run


@pytest.mark.timing
def test_slow_step_still_gets_min_runs():
    import time

    t = timing.time_step(lambda: time.sleep(0.02), batch=1, min_run_time=0.01, warmup=0, min_runs=4)
    assert t.runs >= 4
    assert 0.018 < t.median_s < 0.5


def test_measure_small_vit():
    t = timing.measure(Case("vit_s16", 32, 8, batch=2, overrides=TINY_VIT), min_run_time=0.01, warmup=1, min_runs=3)
    assert t.batch == 2 and t.median_s > 0 and t.iqr_s >= 0
    assert t.images_per_s == pytest.approx(2 / t.median_s)


def test_train_step_updates_weights_and_infer_does_not():
    model = timing.build_model("vit_s16", 32, 8, overrides=TINY_VIT)
    before = [p.detach().clone() for p in model.parameters()]
    timing.make_step(model, batch=2, img_size=32, device="cpu", mode="infer")()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert not model.training
    timing.make_step(model, batch=2, img_size=32, device="cpu", mode="train")()
    assert model.training
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_bfloat16_autocast_runs_matmuls_in_bfloat16():
    model = timing.build_model("vit_s16", 32, 8, overrides=TINY_VIT)
    seen = []
    model.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    timing.make_step(model, batch=1, img_size=32, device="cpu", dtype="bfloat16")()
    assert seen == [torch.bfloat16]
    assert next(model.parameters()).dtype == torch.float32  # weights stay float32 under autocast


def test_channels_last_for_convnets_only():
    assert timing.uses_channels_last("resnet18")
    assert timing.uses_channels_last("timm:resnet18")
    assert not timing.uses_channels_last("vit_s16")
    assert not timing.uses_channels_last("timm:mixer_s16_224")
    model = timing.build_model("resnet18", 32, overrides={"width": 8}, channels_last=True)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_achieved_flops_convention():
    # 2 FLOPs per multiply-add for inference, 3 forward passes for a training step
    assert timing.achieved_flops(10**9, 5.0, "infer") == 2 * 10**9 * 5.0
    assert timing.achieved_flops(10**9, 5.0, "train") == 6 * 10**9 * 5.0


@pytest.mark.timing
def test_matmul_roof_is_plausible():
    roof = timing.matmul_roof("cpu", "float32", size=256, min_run_time=0.05)
    assert 1e8 < roof < 1e13  # between 0.1 GFLOP/s and 10 TFLOP/s on any CPU


def test_check_dtype_and_device():
    timing.check_dtype("cpu", "float32")
    timing.check_dtype("cpu", "bfloat16")
    with pytest.raises(ValueError, match="unknown dtype"):
        timing.check_dtype("cpu", "int8")
    assert timing.resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            timing.resolve_device("cuda")
        assert timing.resolve_device("auto") == "cpu"


@pytest.mark.timing
def test_paired_ratio_of_known_sleeps():
    import time

    p = timing.paired_ratio(lambda: time.sleep(0.02), lambda: time.sleep(0.01), rounds=3, number=1, warmup=0)
    assert p.rounds == 3
    assert p.ratio_q1 <= p.ratio_median <= p.ratio_q3
    assert 1.3 < p.ratio_median < 2.6  # sleep(0.02)/sleep(0.01): about 2, scheduler noise allowed


@pytest.mark.cuda
@cuda
def test_cuda_measure_synchronises():
    t = timing.measure(Case("vit_s16", 64, 8, batch=4, device="cuda", overrides=TINY_VIT), min_run_time=0.05)
    assert t.median_s > 0
    timing.check_dtype("cuda", "float16")
    assert timing.matmul_roof("cuda", "float16", size=2048, min_run_time=0.05) > 1e11
