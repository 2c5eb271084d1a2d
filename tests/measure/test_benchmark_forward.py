"""pytest-benchmark: forward pass of small configurations of the reference models.

CI runs these once as plain tests (``--benchmark-disable`` in pyproject's addopts);
``pytest --benchmark-only --benchmark-enable tests/measure/test_benchmark_forward.py`` measures.
"""

from __future__ import annotations

import pytest
import torch

from bench.measure import timing

CONFIGS = {
    "mixer_c64x2_64px_p4": (
        "mixer_s16",
        64,
        4,
        {"hidden_dim": 64, "num_blocks": 2, "tokens_mlp_dim": 32, "channels_mlp_dim": 256},
    ),
    "vit_d64x2_fused_64px_p4": (
        "vit_s16",
        64,
        4,
        {"hidden_dim": 64, "num_blocks": 2, "num_heads": 2, "mlp_dim": 256, "attn_backend": "fused"},
    ),
    "vit_d64x2_explicit_64px_p4": (
        "vit_s16",
        64,
        4,
        {"hidden_dim": 64, "num_blocks": 2, "num_heads": 2, "mlp_dim": 256, "attn_backend": "explicit"},
    ),
    "resnet18_w16_64px": ("resnet18", 64, None, {"width": 16}),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_forward(benchmark, config):
    name, img_size, patch, overrides = CONFIGS[config]
    torch.manual_seed(0)
    model = timing.build_model(name, img_size, patch, overrides=overrides).eval()
    x = torch.randn(2, 3, img_size, img_size)

    def forward():
        with torch.inference_mode():
            return model(x)

    out = benchmark(forward)
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()
