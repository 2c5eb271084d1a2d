"""MLP-Mixer (Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision", 2021).

Names follow the paper's Table 1: ``hidden_dim`` is C, ``tokens_mlp_dim`` is D_S,
``channels_mlp_dim`` is D_C and ``num_patches`` is S. There is no positional embedding:
the token-mixing MLP is sensitive to patch order by itself.

Because the token-mixing MLP is Linear(S, D_S), its weights depend on the number of
patches: a Mixer is built for one resolution. With D_S fixed (the paper's and timm's
choice, our default) every layer costs O(S), so the whole model is linear in S.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .layers import Mlp, PatchEmbed, check_patch_grid, check_sizes, init_transformer_weights


@dataclass(frozen=True)
class MixerConfig:
    patch_size: int  # P: patches are P x P pixels
    hidden_dim: int  # C: channels per patch, the width of every layer (isotropic)
    num_blocks: int  # number of Mixer layers
    tokens_mlp_dim: int  # D_S: hidden width of the token-mixing MLP (mixes across the S patches)
    channels_mlp_dim: int  # D_C: hidden width of the channel-mixing MLP (mixes across the C channels)
    img_size: int = 224  # square input side in pixels
    in_chans: int = 3
    num_classes: int = 1000

    def __post_init__(self):
        check_sizes(
            self,
            ("patch_size", "hidden_dim", "num_blocks", "tokens_mlp_dim", "channels_mlp_dim", "img_size", "in_chans"),
            ("num_classes",),
        )

    @property
    def num_patches(self) -> int:
        """S, the sequence length: (img_size / P)^2."""
        return check_patch_grid(self.img_size, self.patch_size)


# Tolstikhin et al. 2021, Table 1 (parameters in millions, without the head, in the comment).
# One preset a line: a data table, as the paper's (the formatter would wrap it).
# fmt: off
PRESETS: dict[str, MixerConfig] = {
    "mixer_s32": MixerConfig(patch_size=32, hidden_dim=512, num_blocks=8, tokens_mlp_dim=256, channels_mlp_dim=2048),  # 19M
    "mixer_s16": MixerConfig(patch_size=16, hidden_dim=512, num_blocks=8, tokens_mlp_dim=256, channels_mlp_dim=2048),  # 18M
    "mixer_b32": MixerConfig(patch_size=32, hidden_dim=768, num_blocks=12, tokens_mlp_dim=384, channels_mlp_dim=3072),  # 60M
    "mixer_b16": MixerConfig(patch_size=16, hidden_dim=768, num_blocks=12, tokens_mlp_dim=384, channels_mlp_dim=3072),  # 59M
    "mixer_l32": MixerConfig(patch_size=32, hidden_dim=1024, num_blocks=24, tokens_mlp_dim=512, channels_mlp_dim=4096),  # 206M
    "mixer_l16": MixerConfig(patch_size=16, hidden_dim=1024, num_blocks=24, tokens_mlp_dim=512, channels_mlp_dim=4096),  # 207M
    "mixer_h14": MixerConfig(patch_size=14, hidden_dim=1280, num_blocks=32, tokens_mlp_dim=640, channels_mlp_dim=5120),  # 431M
}
# fmt: on


class MixerBlock(nn.Module):
    """One Mixer layer (paper Fig. 1): token mixing, then channel mixing, each pre-LN with a skip."""

    def __init__(self, num_patches: int, hidden_dim: int, tokens_mlp_dim: int, channels_mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp_tokens = Mlp(num_patches, tokens_mlp_dim)  # Linear(S, D_S), GELU, Linear(D_S, S)
        self.norm2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp_channels = Mlp(hidden_dim, channels_mlp_dim)  # Linear(C, D_C), GELU, Linear(D_C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, S, C)
        y = self.norm1(x).transpose(1, 2)  # (B, S, C) -> (B, C, S): mix across patches
        x = x + self.mlp_tokens(y).transpose(1, 2)  # (B, C, S) -> (B, S, C)
        x = x + self.mlp_channels(self.norm2(x))
        return x


class MlpMixer(nn.Module):
    def __init__(self, config: MixerConfig):
        super().__init__()
        self.config = config
        self.num_tokens = config.num_patches  # S: the tokens that the model mixes
        self.stem = PatchEmbed(config.patch_size, config.in_chans, config.hidden_dim)
        self.blocks = nn.Sequential(
            *[
                MixerBlock(config.num_patches, config.hidden_dim, config.tokens_mlp_dim, config.channels_mlp_dim)
                for _ in range(config.num_blocks)
            ]
        )
        self.norm = nn.LayerNorm(config.hidden_dim, eps=1e-6)
        self.head = nn.Linear(config.hidden_dim, config.num_classes) if config.num_classes > 0 else nn.Identity()
        self.apply(init_transformer_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 3, H, W) -> (B, S, C)
        x = self.blocks(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=1))  # global average pooling over the S patches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(
    name: str,
    img_size: int = 224,
    patch_size: int | None = None,
    num_classes: int = 1000,
    scale_tokens_mlp: bool = False,
    **overrides,
) -> MlpMixer:
    """Build preset ``name`` for ``img_size``.

    ``scale_tokens_mlp=True`` grows D_S in proportion to S (keeping the preset's D_S / S
    at 224 px), which makes the token-mixing cost quadratic in S; the default keeps D_S
    fixed as the paper does.
    """
    base = PRESETS[name]
    config = dataclasses.replace(
        base, img_size=img_size, patch_size=patch_size or base.patch_size, num_classes=num_classes, **overrides
    )
    num_patches = config.num_patches  # validates img_size / patch_size
    if scale_tokens_mlp:
        base_patches = (224 // base.patch_size) ** 2
        config = dataclasses.replace(
            config, tokens_mlp_dim=max(1, round(base.tokens_mlp_dim * num_patches / base_patches))
        )
    return MlpMixer(config)
