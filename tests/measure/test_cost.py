"""bench.measure.cost against independent references: hand counts, closed forms, the H200's allocator, CPU RSS.

Every expected figure here is derived from layer shapes (written out in the test) or was
measured by something else (CUDA ``max_memory_allocated`` on an H200, the CPU worker's
peak RSS); none is this code's own earlier output.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import architectures
from bench.analysis.scaling import fit
from bench.measure.cost import Autocast, ClassTally, CostCounter, cost
from bench.schema import Case, Cost, decode_object, encode, read_results
from helpers import ROOT

F32 = 4


def _counted(fn, *tensors) -> CostCounter:
    counter = CostCounter()
    with torch.inference_mode(), Autocast("float32", "cpu"), counter:
        fn(*tensors)
    counter.close()
    return counter


def _meta(*shape) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


# --- bytes moved: hand counts ----------------------------------------------------------------


def test_bytes_moved_of_a_linear_layer():
    # y = x W^T + b, x (4, 8), W (16, 8): read x, W, b; write y. One kernel (addmm); W^T is a view.
    x, w, b = _meta(4, 8), _meta(16, 8), _meta(16)
    c = _counted(F.linear, x, w, b)
    assert c.bytes_moved == F32 * (4 * 8 + 16 * 8 + 16 + 4 * 16)
    assert c.ops == 1
    assert c.flops == 2 * 4 * 8 * 16
    # Outside any module a matmul is dense work: the class's tally is the same hand count.
    assert c.by_class["dense"] == ClassTally(
        bytes_moved=F32 * (4 * 8 + 16 * 8 + 16 + 4 * 16), ops=1, flops=2 * 4 * 8 * 16
    )


def test_the_classes_of_a_step_add_up_to_the_step():
    r = cost(Case("mixer_s16", 96))
    assert set(r.by_class) == {"dense", "token_mixing", "norm_elementwise"}  # data movement does no work here
    assert sum(c.bytes_moved for c in r.by_class.values()) == r.bytes_moved
    assert sum(c.flops for c in r.by_class.values()) == r.flops
    assert sum(c.ops for c in r.by_class.values()) == r.ops


def test_bytes_moved_of_layer_norm():
    # x (4, 8) normalised over 8 with weight and bias: read x, gamma, beta; write y and the
    # per-row mean and reciprocal std (4 each) that the kernel returns.
    x, g, b = _meta(4, 8), _meta(8), _meta(8)
    c = _counted(lambda *t: F.layer_norm(t[0], (8,), t[1], t[2]), x, g, b)
    assert c.bytes_moved == F32 * (32 + 8 + 8 + 32 + 4 + 4)
    assert c.ops == 1


def test_bytes_moved_of_gelu_and_of_a_view():
    x = _meta(4, 8)
    assert _counted(F.gelu, x).bytes_moved == F32 * (32 + 32)
    views = _counted(lambda t: t.transpose(0, 1).reshape(8, 4)[1:].unsqueeze(0), x)
    assert (views.bytes_moved, views.ops) == (0, 0)  # metadata only
    copy = _counted(lambda t: t.transpose(0, 1).contiguous(), x)
    assert (copy.bytes_moved, copy.ops) == (F32 * 64, 1)  # a real copy: read 32, write 32


def test_bytes_moved_of_fused_attention():
    # q, k, v (B=2, h=3, S=5, d=4): the fused kernel reads the three and writes the output
    # and the per-row log-sum-exp (B, h, S) in float32; nothing S x S.
    q, k, v = (_meta(2, 3, 5, 4) for _ in range(3))
    c = _counted(F.scaled_dot_product_attention, q, k, v)
    assert c.bytes_moved == F32 * (3 * 120 + 120 + 30)
    assert c.ops == 1
    assert c.flops == 2 * (2 * 3 * 5 * 5 * (4 + 4))


# --- peak activation bytes: closed forms -------------------------------------------------------


def test_peak_of_explicit_attention_holds_two_score_matrices():
    # ViT's Attention, explicit backend, float32, input x (B, S, D) allocated outside. At
    # `attn.softmax(-1) @ v` these are alive: qkv (3 BSD, viewed by q, k, v), the scores
    # `attn` (B h S^2, a local), the softmax (B h S^2), v made contiguous for bmm (BSD) and
    # the bmm output (BSD): 4 * (5 BSD + 2 B h S^2), the peak whenever h S > D.
    from architectures.vit import Attention

    B, S, D, h = 2, 197, 384, 6
    with torch.device("meta"):
        attn = Attention(D, h, "explicit")
    c = _counted(attn, _meta(B, S, D))
    assert c.peak() == F32 * (5 * B * S * D + 2 * B * h * S * S)


def test_explicit_attention_is_quadratic_in_peak_memory_and_fused_is_linear():
    sizes = (224, 448, 672)
    B, h = 1, 12  # ViT-B/16
    explicit = [cost(Case("vit_b16", s, overrides={"attn_backend": "explicit"})) for s in sizes]
    fused = [cost(Case("vit_b16", s, overrides={"attn_backend": "fused"})) for s in sizes]
    x = [r.tokens for r in explicit]
    e = fit(x, [r.peak_activation_bytes for r in explicit])
    f = fit(x, [r.peak_activation_bytes for r in fused])
    assert e.verdict == "quadratic" and e.b == 2 * B * h * F32  # the two S x S matrices of the closed form above
    assert f.verdict == "linear" and f.b == 0
    # bf16 autocast on CUDA: scores from the bf16 matmul (2 bytes), their float32 cast for
    # softmax (4) and the float32 softmax (4) are alive together: 10 bytes per score.
    bf16 = [
        cost(Case("vit_b16", s, batch=2, dtype="bfloat16", device="cuda", overrides={"attn_backend": "explicit"}))
        for s in sizes
    ]
    assert fit(x, [r.peak_activation_bytes for r in bf16]).b == 2 * h * (2 + 4 + 4)


def test_peak_of_a_mixer_block_from_its_layer_shapes():
    # MixerBlock, float32, x (B, S, C) allocated outside. `y = norm1(x).transpose(1, 2)` is a
    # local alive for the whole block (BSC); in the channel MLP x1 = x + token mixing (BSC),
    # norm2's output (BSC, an argument on the caller's stack) and, during GELU, fc1's
    # output and GELU's (2 B S D_C): 4 * B * S * (3 C + 2 D_C). The token MLP's largest set,
    # y + reshaped copy + fc1 out (+ GELU) = 4 B (2 S C + 2 C D_S), is smaller here.
    from architectures.mixer import MixerBlock

    B, S, C, DS, DC = 2, 196, 512, 256, 2048
    with torch.device("meta"):
        block = MixerBlock(S, C, DS, DC)
    c = _counted(block, _meta(B, S, C))
    assert c.peak() == F32 * B * S * (3 * C + 2 * DC)


def test_training_gradients_are_the_parameters():
    r = cost(Case("mixer_s16", 96, mode="train"))
    params = sum(p.numel() for p in _meta_model("mixer_s16", 96).parameters())
    assert r.gradient_bytes == F32 * params
    assert r.optimizer_bytes == 0  # SGD without momentum keeps no state
    assert r.peak_step_bytes >= r.peak_activation_bytes > 0
    assert decode_object(Cost, json.loads(json.dumps(encode(r)))) == r


def _meta_model(name, size):
    with torch.device("meta"):
        return architectures.create(name, img_size=size)


# --- against measured memory ---------------------------------------------------------------------

# CUDA's caching allocator rounds every block up (512 B; large blocks to 2 MiB segments'
# granularity) and cuDNN/cuBLAS add workspaces: the meta count is a lower bound that was
# within 1.8% (inference, exact in 23 of 42 cases) and 3.8% (training) of the recorded
# max_memory_allocated figures. Asserted with the margins 2% and 4%.
H200_TOLERANCE = {"infer": 0.02, "train": 0.04}


def _h200_cases(folder: str):
    records, problems = read_results(ROOT / "results" / folder / "results.jsonl")
    assert problems == []
    for r in records:
        if r.status == "ok":
            yield r.case, r.batch, r.memory.activation_bytes


@pytest.mark.parametrize("folder", ["h200-paper", "h200-paper-train"])
def test_peak_matches_the_h200_allocator(folder):
    worst = 0.0
    for case, batch, measured in _h200_cases(folder):
        r = cost(case, batch)  # bf16 autocast on CUDA, modelled on meta
        # The sweep measures the second step: the first step's gradients are in its "before"
        # figure and are freed by zero_grad(set_to_none=True) before the peak, so the
        # allocator's activation figure is the step's peak minus one set of gradients.
        predicted = r.peak_activation_bytes if case.mode == "infer" else r.peak_step_bytes - r.gradient_bytes
        error = predicted / measured - 1
        assert -H200_TOLERANCE[case.mode] <= error <= 0.001, (case, batch, measured, predicted)
        worst = max(worst, abs(error))
    assert worst > 0  # the allocator's rounding is visible somewhere: the figures are not copies


def test_peak_matches_cpu_peak_rss_of_the_memory_worker():
    # Mixer-S/16, 224 px, batch 16, float32: ~80 MB of activations, far above RSS noise
    # (4 KiB pages; allocations under 64 KiB stay in the heap). Measured 0.03% apart here.
    from bench.measure import memory

    if memory.cpu_rss_supported():
        pytest.skip(memory.cpu_rss_supported())
    case = Case("mixer_s16", 224, batch=16)
    measured = memory.measure(case).activation_bytes
    assert cost(case).peak_activation_bytes == pytest.approx(measured, rel=0.02)
