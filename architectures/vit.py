"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021).

Names follow the paper's Table 1: ``hidden_dim`` is D, ``mlp_dim`` the MLP size (4 D),
``num_heads`` the heads, ``num_blocks`` the layers. The model mixes S = N + 1 tokens:
N = (img_size / P)^2 patches plus the class token.

Per block the cost is about 12 S D^2 (qkv, projection, MLP) + 2 S^2 D (q k^T and attn v)
multiply-adds: linear in S until S is about 6 D, quadratic beyond.

Attention backends, interchangeable with the same weights:
``"sdpa"`` (alias ``"fused"``, its older name) calls ``scaled_dot_product_attention`` with
torch's default dispatch (never materialises S x S in memory on backends with a
flash/efficient kernel); ``"sdpa-math"``, ``"sdpa-flash"``, ``"sdpa-efficient"`` and
``"sdpa-cudnn"`` pin one kernel through ``torch.nn.attention.sdpa_kernel`` (a device
without it raises RuntimeError); ``"explicit"`` computes q k^T, softmax and attn v,
holding the S x S matrix. Switch with :func:`set_attention_backend`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Mlp, PatchEmbed, check_patch_grid, check_sizes, init_transformer_weights

ATTENTION_BACKENDS = ("fused", "explicit", "sdpa", "sdpa-math", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn")
# backend -> the SDPBackend member it pins (None: torch's default dispatch)
SDPA_PINNED = {
    "sdpa-math": "MATH",
    "sdpa-flash": "FLASH_ATTENTION",
    "sdpa-efficient": "EFFICIENT_ATTENTION",
    "sdpa-cudnn": "CUDNN_ATTENTION",
}


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """``scaled_dot_product_attention`` with default dispatch ("sdpa", "fused") or one pinned kernel."""
    pinned = SDPA_PINNED.get(backend)
    if pinned is None:
        return F.scaled_dot_product_attention(q, k, v)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(getattr(SDPBackend, pinned)):
        return F.scaled_dot_product_attention(q, k, v)


GLOBAL_POOLS = ("token", "avg")


@dataclass(frozen=True)
class ViTConfig:
    patch_size: int  # P: patches are P x P pixels
    hidden_dim: int  # D: token width, the same in every block
    num_blocks: int  # L: number of Transformer blocks
    num_heads: int  # attention heads; D must be divisible by it
    mlp_dim: int  # MLP hidden width (4 D in every preset)
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    attn_backend: str = "fused"  # "fused"/"sdpa" (SDPA, default dispatch), "sdpa-<kernel>", or "explicit" (S x S)
    class_token: bool = True  # prepend a learned class token
    pos_embed: bool = True  # learned positional embedding (off: the model no longer knows patch order)
    global_pool: str = "token"  # "token": head reads the class token; "avg": mean over all tokens

    def __post_init__(self):
        check_sizes(
            self,
            ("patch_size", "hidden_dim", "num_blocks", "num_heads", "mlp_dim", "img_size", "in_chans"),
            ("num_classes",),
        )
        if self.attn_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attn_backend must be one of {ATTENTION_BACKENDS}, got {self.attn_backend!r}")
        if self.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {self.global_pool!r}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def num_patches(self) -> int:
        """N = (img_size / P)^2."""
        return check_patch_grid(self.img_size, self.patch_size)

    @property
    def num_tokens(self) -> int:
        """S, the tokens attention mixes: the patches plus the class token."""
        return self.num_patches + int(self.class_token)


# Dosovitskiy et al. 2021, Table 1 (B, L, H); Ti and S from Touvron et al. 2021 (DeiT), Table 1.
# Parameter counts with the 1000-class head at 224 px.
PRESETS: dict[str, ViTConfig] = {
    "vit_ti16": ViTConfig(patch_size=16, hidden_dim=192, num_blocks=12, num_heads=3, mlp_dim=768),  # 5.7M
    "vit_s16": ViTConfig(patch_size=16, hidden_dim=384, num_blocks=12, num_heads=6, mlp_dim=1536),  # 22.1M
    "vit_b16": ViTConfig(patch_size=16, hidden_dim=768, num_blocks=12, num_heads=12, mlp_dim=3072),  # 86.6M
    "vit_b32": ViTConfig(patch_size=32, hidden_dim=768, num_blocks=12, num_heads=12, mlp_dim=3072),  # 88.2M
    "vit_l16": ViTConfig(patch_size=16, hidden_dim=1024, num_blocks=24, num_heads=16, mlp_dim=4096),  # 304.3M
    "vit_h14": ViTConfig(patch_size=14, hidden_dim=1280, num_blocks=32, num_heads=16, mlp_dim=5120),  # 632.0M
}


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, backend: str):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.backend = backend
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        qkv = self.qkv(x).reshape(B, S, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, S, head_dim)
        if self.backend != "explicit":
            x = sdpa(q, k, v, self.backend)
        else:
            attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # (B, heads, S, S)
            x = attn.softmax(dim=-1) @ v  # (B, heads, S, head_dim)
        x = x.transpose(1, 2).reshape(B, S, D)  # (B, heads, S, hd) -> (B, S, D)
        return self.proj(x)


class Block(nn.Module):
    """Pre-LN Transformer encoder block (paper eq. 2-3)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_dim, eps=1e-6)
        self.attn = Attention(config.hidden_dim, config.num_heads, config.attn_backend)
        self.norm2 = nn.LayerNorm(config.hidden_dim, eps=1e-6)
        self.mlp = Mlp(config.hidden_dim, config.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class VisionTransformer(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.num_tokens = config.num_tokens  # S, class token included
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, config.hidden_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_dim)) if config.class_token else None
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, config.num_tokens, config.hidden_dim)) if config.pos_embed else None
        )
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.num_blocks)])
        self.norm = nn.LayerNorm(config.hidden_dim, eps=1e-6)
        self.head = nn.Linear(config.hidden_dim, config.num_classes) if config.num_classes > 0 else nn.Identity()
        self.apply(init_transformer_weights)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, 3, H, W) -> (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # -> (B, S = N + 1, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.blocks(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.global_pool == "token":
            x = x[:, 0]  # the class token
        else:
            x = x.mean(dim=1)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def set_attention_backend(model: nn.Module, backend: str) -> nn.Module:
    """Switch every attention layer of ``model`` to ``backend`` in place (weights unchanged)."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no reference attention layers")
    for layer in layers:
        layer.backend = backend
    if isinstance(model, VisionTransformer):
        model.config = dataclasses.replace(model.config, attn_backend=backend)
    return model


def build(
    name: str, img_size: int = 224, patch_size: int | None = None, num_classes: int = 1000, **overrides
) -> VisionTransformer:
    base = PRESETS[name]
    config = dataclasses.replace(
        base, img_size=img_size, patch_size=patch_size or base.patch_size, num_classes=num_classes, **overrides
    )
    _ = config.num_patches  # validates img_size / patch_size before any weight is allocated
    return VisionTransformer(config)
