"""Building blocks shared by the Mixer and the ViT: patch embedding and a two-layer MLP.

Attribute names (``proj``, ``fc1``, ``fc2``) follow timm's, so that timm's state dicts
load into the reference models with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """Cut the image into non-overlapping P x P patches and project each to ``dim`` channels.

    A convolution with kernel = stride = P is exactly "flatten each patch, then one shared
    linear layer" (Dosovitskiy et al. 2021, eq. 1; Tolstikhin et al. 2021, Fig. 1).
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, 3, H, W) -> (B, dim, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # -> (B, S, dim), patches in row-major order


class Mlp(nn.Module):
    """Linear(in, hidden) -> GELU -> Linear(hidden, in), as in both papers."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def init_transformer_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights (std 0.02), zero biases, unit LayerNorms.

    Only random weights are ever used here (nothing is downloaded); the init matters
    for the patch-shuffle training experiment, not for cost measurements.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def check_sizes(config, positive: tuple[str, ...], non_negative: tuple[str, ...] = ()) -> None:
    """Raise ValueError unless each field in ``positive`` is an integer >= 1 (``non_negative``: >= 0).

    Called by the configs' ``__post_init__``, so a degenerate model (no blocks, a zero-width
    layer) is refused when it is described, not when it is built or run.
    """
    for names, minimum, what in ((positive, 1, "a positive integer"), (non_negative, 0, "an integer >= 0")):
        for name in names:
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be {what}, got {value!r}")


def check_patch_grid(img_size: int, patch_size: int) -> int:
    """Return the number of patches S = (img_size / patch_size)^2, or raise ValueError."""
    if img_size <= 0 or patch_size <= 0:
        raise ValueError(f"img_size and patch_size must be positive, got img_size={img_size}, patch_size={patch_size}")
    if img_size % patch_size:
        raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
    return (img_size // patch_size) ** 2
