"""Parameter closed forms (what `mixerbench list` prints) against the models built on meta."""

from __future__ import annotations

import pytest
import torch

import architectures
from bench.measure import formulas


def built_params(name: str, **overrides) -> int:
    with torch.device("meta"):
        model = architectures.create(name, **overrides)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", architectures.list_models())
def test_every_preset(name):
    assert formulas.params(architectures.get_config(name)) == built_params(name)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("vit_s16", {"class_token": False, "global_pool": "avg"}),
        ("vit_s16", {"pos_embed": False, "num_classes": 0}),
        ("vit_ti16", {"img_size": 384, "patch_size": 8}),
        ("mixer_s16", {"img_size": 96, "tokens_mlp_dim": 17, "num_classes": 10}),
        ("resnet18", {"width": 16, "layers": (1, 1, 1, 1)}),
        ("resnet50", {"in_chans": 1, "num_classes": 0}),
    ],
)
def test_with_overrides(name, overrides):
    with torch.device("meta"):
        config = architectures.create(name, **overrides).config
    assert formulas.params(config) == built_params(name, **overrides)


def test_zoo_matches_the_published_sizes():
    """The zoo's counts are timm's published parameter counts (ViT-B/16 86.6M, Mixer-B/16 59.9M, ResNet-50 25.6M)."""
    rows = {r.model: r for r in formulas.zoo()}
    assert rows["vit_b16"].params == 86_567_656 and rows["vit_b16"].tokens == 197
    assert rows["mixer_b16"].params == 59_880_472 and rows["mixer_b16"].tokens == 196
    assert rows["resnet50"].params == 25_557_032 and rows["resnet50"].tokens is None
