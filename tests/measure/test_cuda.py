"""GPU paths run for real: out-of-memory handling, the max-batch search, bfloat16, train steps.

Every test here needs a CUDA GPU and is skipped without one (CI has none); run them with
``pytest -m cuda`` on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from bench.measure import memory, timing
from bench.runs import sweep
from bench.schema import Case
from helpers import TINY_VIT

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

# 512 px, patch 4: S = 16,385 tokens, so one explicit S x S float32 score matrix per head is 1.07 GB.
HUGE_S = dict(model="vit_s16", img_size=512, patch_size=4, device="cuda", mode="infer")
S = (512 // 4) ** 2 + 1


def explicit_case(batch) -> Case:
    return Case(batch=batch, dtype="float32", overrides=dict(TINY_VIT, attn_backend="explicit"), **HUGE_S)


def run(case: Case):
    return sweep.run_case(case, env={}, roof=1e12, min_run_time=0.05, min_runs=2, warmup=1)


def test_real_oom_is_recorded_and_memory_is_given_back():
    total = torch.cuda.mem_get_info()[1]
    batch = int(total // (2 * S * S * 4)) + 1  # the scores alone (2 heads, float32) need more than the card has
    record = run(explicit_case(batch))
    assert record.status == "oom", record
    assert "out of memory" in record.error.lower()
    assert torch.cuda.memory_allocated() < 64 * 2**20  # nothing left behind by the failed case
    after = run(explicit_case(1))
    assert after.status == "ok", after
    # one sample's explicit scores (2 heads) were live at the peak: the allocator saw at least that much
    assert after.memory.activation_bytes >= 2 * S * S * 4


def test_max_batch_is_the_boundary():
    case = explicit_case("max")
    fits = sweep._cuda_batch_fits(case)
    best = sweep.find_max_batch(fits)
    total = torch.cuda.mem_get_info()[1]
    assert 1 <= best < total // (2 * S * S * 4)
    assert fits(best) and not fits(best + 1)
    record = run(case)
    assert record.status == "ok" and record.batch == best


def test_bfloat16_autocast_on_cuda():
    model = timing.build_model("vit_s16", 64, 8, device="cuda", overrides=TINY_VIT)
    seen = []
    model.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    timing.make_step(model, batch=2, img_size=64, device="cuda", dtype="bfloat16")()
    assert seen == [torch.bfloat16]
    assert next(model.parameters()).dtype == torch.float32
    assert timing.matmul_roof("cuda", "bfloat16", size=2048, min_run_time=0.05) > timing.matmul_roof(
        "cuda", "float32", size=2048, min_run_time=0.05
    )


def test_fused_attention_needs_less_memory_than_explicit():
    common = dict(model="vit_s16", img_size=512, patch_size=4, batch=1, device="cuda", dtype="bfloat16")
    fused = memory.measure_in_process(Case(overrides=dict(TINY_VIT, attn_backend="fused"), **common))
    explicit = memory.measure_in_process(Case(overrides=dict(TINY_VIT, attn_backend="explicit"), **common))
    # explicit keeps at least one 2 x S x S score tensor (bf16 or wider); fused never builds it
    assert explicit.activation_bytes - fused.activation_bytes >= 2 * S * S * 2
    assert fused.activation_bytes < 2 * S * S * 2


def test_train_step_on_cuda_records_more_memory_than_inference():
    common = dict(model="mixer_s16", img_size=64, patch_size=8, batch=8, device="cuda")
    small = {"hidden_dim": 64, "num_blocks": 2, "tokens_mlp_dim": 32, "channels_mlp_dim": 256}
    infer = memory.measure_in_process(Case(mode="infer", overrides=small, **common))
    train = memory.measure_in_process(Case(mode="train", overrides=small, **common))
    assert train.peak_bytes > infer.peak_bytes
    t = timing.measure(Case(mode="train", overrides=small, **common), min_run_time=0.05)
    assert t.median_s > 0 and t.images_per_s == pytest.approx(8 / t.median_s)


def test_energy_of_a_matmul_step_from_nvml():
    from bench.measure import energy

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)

    def step():
        a @ a
        torch.cuda.synchronize()

    step()
    e = energy.measure(step, batch=1, device="cuda")
    assert e.unavailable is None, e.unavailable  # H100 / H200: Volta or newer, the counter is there
    assert e.window_s >= energy.MIN_WINDOW_S and e.steps > 0
    # a busy GPU draws more than idle (tens of watts) and at most its board limit (700 W for an H100/H200 SXM)
    assert 30 < e.mean_watts < 1000
    assert e.joules_per_image == pytest.approx(e.mean_watts * e.window_s / e.steps, rel=1e-9)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_a_compiled_case_records_its_compile_time_and_energy(mode):
    case = Case("vit_s16", 64, 8, batch=4, device="cuda", compile=mode, overrides=TINY_VIT)
    measured = timing.measure_case(case, min_run_time=0.05, warmup=1, min_runs=3)
    ct = measured.compile_time
    assert ct.mode == mode and ct.first_call_s > 0 and ct.warmup_steps >= 3
    assert measured.timing.warmup == 1 + ct.warmup_steps
    assert measured.energy.unavailable is None and measured.energy.joules_per_image > 0
