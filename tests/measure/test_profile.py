"""Attention backends, the profiler's per-class time and the kernel each backend really ran."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import architectures
from bench.measure import attention, profile, timing
from bench.schema import Case
from helpers import ROOT, TINY_VIT

CPU_BACKENDS = ("explicit", "sdpa", "fused", "sdpa-math", "sdpa-flash")
EXPECTED_KERNEL = {
    "explicit": "explicit",
    "sdpa": "flash",
    "fused": "flash",
    "sdpa-math": "math",
    "sdpa-flash": "flash",
}


def vit(backend: str, device: str = "cpu"):
    torch.manual_seed(0)
    with torch.device(device):
        return architectures.create("vit_s16", img_size=32, patch_size=8, attn_backend=backend, **TINY_VIT).eval()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_every_backend_gives_the_explicit_logits_and_names_its_kernel(backend):
    x = torch.randn(2, 3, 32, 32)
    model = vit(backend)
    reference = vit("explicit")
    with torch.inference_mode():
        assert (model(x) - reference(x)).abs().max().item() < 1e-5
    case = Case("vit_s16", 32, 8, 1, "cpu", "float32", "infer", dict(TINY_VIT, attn_backend=backend))
    step = timing.case_step(case, model)
    step()
    result = profile.profile_step(model, step)
    assert result.attention_kernel == EXPECTED_KERNEL[backend]
    assert result.cpu_s["attention"] > 0 and result.cpu_s["dense"] > 0


def test_profile_attributes_time_to_the_classes_by_module():
    mixer = Case(
        "mixer_s16",
        64,
        8,
        1,
        "cpu",
        "float32",
        "infer",
        {"hidden_dim": 32, "num_blocks": 1, "tokens_mlp_dim": 16, "channels_mlp_dim": 64},
    )
    model = timing.build_case(mixer)
    step = timing.case_step(mixer, model)
    step()
    result = profile.profile_step(model, step)
    assert result.attention_kernel is None
    assert result.cpu_s["attention"] == 0 and result.cpu_s["token_mixing"] > 0 and result.cpu_s["dense"] > 0
    resnet = Case("resnet18", 64, None, 1, "cpu", "float32", "infer", {"width": 8}, channels_last=True)
    model = timing.build_case(resnet)
    step = timing.case_step(resnet, model)
    step()
    times = profile.profile_step(model, step).cpu_s
    # mkldnn convolutions count as the convolutions they run for (dense), never as unclassified work; which
    # class takes longer in one profiled step is a timing, not something a unit test can assert
    assert times["dense"] > 0 and times["attention"] == times["token_mixing"] == 0


def test_class_work_splits_vit_work_into_linear_and_quadratic():
    from bench.analysis.attribution import quadratic_fractions

    d, sizes = 32, (32, 64, 96, 128)
    tokens = [(size // 8) ** 2 + 1 for size in sizes]
    vit = Case("vit_s16", 32, 8, overrides={"attn_backend": "fused", **TINY_VIT})
    works = [profile.class_work(vit.replace(img_size=size)) for size in sizes]
    for s, work in zip(tokens, works):
        assert work["attention"] >= 2 * s * s * d  # q k^T and attn v MACs, plus the softmax's elements
        assert work["token_mixing"] == 0 and work["dense"] > 0
    fractions = quadratic_fractions(tokens, works)
    assert set(fractions) == {"attention"} and fractions["attention"] > 0.9
    tiny = {"hidden_dim": 32, "num_blocks": 1, "tokens_mlp_dim": 16, "channels_mlp_dim": 64}
    mixer = profile.class_work(Case("mixer_s16", 64, 8, overrides=tiny))
    assert mixer["attention"] == 0 and mixer["token_mixing"] == 2 * 64 * 16 * 32  # two Linear(S, D_S) per channel


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU these kernels exist")
@pytest.mark.parametrize("backend", ["sdpa-efficient", "sdpa-cudnn"])
def test_a_kernel_the_cpu_lacks_is_one_line_and_exit_2(backend, tmp_path):
    with pytest.raises(ValueError, match="cannot run"):
        attention.check_backend("cpu", backend)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "sweep", "--device", "cpu", "--attention", backend, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    err = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and backend in err[0] and "cannot run" in err[0]
    assert not out.exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "backend, kernel", [("sdpa-math", "math"), ("sdpa-efficient", "efficient"), ("sdpa-flash", "flash")]
)
def test_cuda_kernels_are_named(backend, kernel):
    try:
        attention.check_backend("cuda", backend, "bfloat16")
    except ValueError as exc:
        pytest.skip(str(exc))
    case = Case("vit_s16", 32, 8, 1, "cuda", "bfloat16", "infer", dict(TINY_VIT, attn_backend=backend))
    model = timing.build_case(case)
    step = timing.case_step(case, model)
    step()
    result = profile.profile_step(model, step, "cuda")
    assert result.attention_kernel == kernel
    assert result.device_s["attention"] > 0


def test_tensor_peak_is_linear_in_s_for_fused_attention_and_counts_training_gradients():
    from bench.analysis import stats

    tokens, peaks = [], []
    for size in (64, 80, 96, 112, 128):  # the quick preset's ViT (below ~250 tokens the flash kernel's blocks show)
        overrides = {"hidden_dim": 64, "num_blocks": 2, "num_heads": 2, "mlp_dim": 256}
        for backend in ("fused", "explicit"):
            case = Case("vit_s16", size, 4, 1, "cpu", "float32", "infer", dict(overrides, attn_backend=backend))
            model = timing.build_case(case)
            step = timing.case_step(case, model)
            step()
            with timing.torch_threads(1):  # the quick preset's one thread (the flash kernel's buffers are per thread)
                peak = profile.profile_step(model, step).tensor_peak_bytes
            if backend == "fused":
                tokens.append((size // 4) ** 2 + 1)
                peaks.append(peak)
            else:
                assert peak >= 2 * tokens[-1] ** 2 * 4  # the explicit S x S scores of 2 heads, float32
    fit = stats.fit_measured(tokens, peaks)
    assert fit.verdict == "linear" and fit.max_rel_residual < 0.01  # tensors, not pages
    train = Case("vit_s16", 32, 8, 1, "cpu", "float32", "train", TINY_VIT)
    model = timing.build_case(train)
    step = timing.case_step(train, model)
    step()
    params = 4 * sum(p.numel() for p in model.parameters())
    assert profile.profile_step(model, step).tensor_peak_bytes >= params
