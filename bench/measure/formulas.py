"""Closed-form MACs per family, from the hyper-parameters alone (batch 1, fvcore's convention).

These are written from the papers' architecture descriptions, not from the code that
counts, so they are an independent check of :mod:`bench.measure.counting`. Each function takes a
family config dataclass (``model.config``, or ``architectures.get_config(name)`` for
224 px) and returns :class:`ClosedForm`: the matmul/conv/attention part and the
normalisation part.

Notation: S tokens, C or D width, L blocks, P patch, K classes.

* Mixer: stem 3 P^2 C S; per block token MLP 2 C S D_S, channel MLP 2 S C D_C,
  two LayerNorms 2 * 5 S C; final LayerNorm 5 S C; head C K. Linear in S when D_S
  is fixed.
* ViT (S = N + 1 with the class token): stem 3 P^2 D N; per block qkv 3 S D^2,
  projection S D^2, attention 2 S^2 D (q k^T and attn v), MLP 2 S D M, two LayerNorms
  2 * 5 S D; final LayerNorm 5 S D; head D K. So b = 2 L D per S^2.
* ResNet: sum over convolutions of C_out * C_in * k^2 * H_out * W_out with the output
  sizes from the stride/padding arithmetic, BatchNorm (eval) 2 per output element, head
  C K. Linear in pixels when the side is a multiple of 32.
"""

from __future__ import annotations

from dataclasses import dataclass

from architectures.mixer import MixerConfig
from architectures.resnet import ResNetConfig
from architectures.vit import ViTConfig


@dataclass(frozen=True)
class ClosedForm:
    matmul: int  # linear layers, convolutions, attention matmuls
    norm: int  # LayerNorm / BatchNorm as fvcore counts them

    @property
    def total(self) -> int:
        return self.matmul + self.norm


@dataclass(frozen=True)
class TokenPolynomial:
    """Total MACs = a*S + b*S^2 + c at a fixed patch size (Mixer and ViT)."""

    a: int
    b: int
    c: int

    def __call__(self, tokens: int) -> int:
        return self.a * tokens + self.b * tokens * tokens + self.c


def mixer(config: MixerConfig) -> ClosedForm:
    s, c, p, blocks = config.num_patches, config.hidden_dim, config.patch_size, config.num_blocks
    stem = config.in_chans * p * p * c * s
    block = 2 * c * s * config.tokens_mlp_dim + 2 * s * c * config.channels_mlp_dim
    head = c * config.num_classes
    norm = (2 * blocks + 1) * 5 * s * c
    return ClosedForm(matmul=stem + blocks * block + head, norm=norm)


def mixer_polynomial(config: MixerConfig) -> TokenPolynomial:
    """Mixer's MACs as a polynomial in S (b = 0: D_S does not depend on S)."""
    c, p, blocks = config.hidden_dim, config.patch_size, config.num_blocks
    per_token = (
        config.in_chans * p * p * c
        + blocks * (2 * c * config.tokens_mlp_dim + 2 * c * config.channels_mlp_dim + 10 * c)
        + 5 * c
    )
    return TokenPolynomial(a=per_token, b=0, c=c * config.num_classes)


def vit(config: ViTConfig) -> ClosedForm:
    n, s, d, p, blocks = config.num_patches, config.num_tokens, config.hidden_dim, config.patch_size, config.num_blocks
    stem = config.in_chans * p * p * d * n
    attention = 2 * s * s * d  # q k^T: heads * S * S * (D / heads); attn v: the same
    block = 3 * s * d * d + s * d * d + attention + 2 * s * d * config.mlp_dim
    head = d * config.num_classes
    norm = (2 * blocks + 1) * 5 * s * d
    return ClosedForm(matmul=stem + blocks * block + head, norm=norm)


def vit_polynomial(config: ViTConfig) -> TokenPolynomial:
    """ViT's MACs as a polynomial in S = N + class token: b = 2 L D, a / b about 6 D."""
    d, p, blocks = config.hidden_dim, config.patch_size, config.num_blocks
    stem_per_patch = config.in_chans * p * p * d
    per_token = stem_per_patch + blocks * (4 * d * d + 2 * d * config.mlp_dim + 10 * d) + 5 * d
    constant = d * config.num_classes - (stem_per_patch if config.class_token else 0)  # the stem sees N = S - 1
    return TokenPolynomial(a=per_token, b=2 * blocks * d, c=constant)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def resnet(config: ResNetConfig) -> ClosedForm:
    matmul = norm = 0

    def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, size: int) -> int:
        nonlocal matmul, norm
        out = _conv_out(size, kernel, stride, kernel // 2)
        matmul += c_out * c_in * kernel * kernel * out * out
        norm += 2 * c_out * out * out  # eval BatchNorm with affine: 2 per element
        return out

    size = conv_bn(config.in_chans, config.width, 7, 2, config.img_size)
    size = _conv_out(size, 3, 2, 1)  # max pool
    expansion = 1 if config.block == "basic" else 4
    c_in = config.width
    for stage, num_blocks in enumerate(config.layers):
        width = config.width * 2**stage
        for j in range(num_blocks):
            stride = 2 if stage > 0 and j == 0 else 1
            c_out = width * expansion
            if stride != 1 or c_in != c_out:  # projection shortcut
                conv_bn(c_in, c_out, 1, stride, size)
            if config.block == "basic":
                out = conv_bn(c_in, width, 3, stride, size)
                conv_bn(width, width, 3, 1, out)
            else:
                conv_bn(c_in, width, 1, 1, size)
                out = conv_bn(width, width, 3, stride, size)
                conv_bn(width, c_out, 1, 1, out)
            size, c_in = out, c_out
    matmul += c_in * config.num_classes
    return ClosedForm(matmul=matmul, norm=norm)


def closed_form(config) -> ClosedForm:
    """Dispatch on the config type (Mixer, ViT or ResNet)."""
    if isinstance(config, MixerConfig):
        return mixer(config)
    if isinstance(config, ViTConfig):
        return vit(config)
    if isinstance(config, ResNetConfig):
        return resnet(config)
    raise TypeError(f"no closed form for {type(config).__name__}")


# --- parameters -----------------------------------------------------------------------------
# Weights plus biases of every layer, from the same architecture descriptions. A Linear(i, o)
# or a convolution with bias has i*o*k^2 + o, LayerNorm and BatchNorm 2 per channel (scale and
# shift; BatchNorm's running statistics are buffers, not parameters).


def _linear(i: int, o: int) -> int:
    return i * o + o


def mixer_params(config: MixerConfig) -> int:
    """Stem P^2 * in_chans * C + C; per block two LayerNorms, the token MLP (S -> D_S -> S) and the channel MLP."""
    s, c = config.num_patches, config.hidden_dim
    block = 2 * 2 * c + _linear(s, config.tokens_mlp_dim) + _linear(config.tokens_mlp_dim, s)
    block += _linear(c, config.channels_mlp_dim) + _linear(config.channels_mlp_dim, c)
    head = _linear(c, config.num_classes) if config.num_classes else 0
    return _linear(config.in_chans * config.patch_size**2, c) + config.num_blocks * block + 2 * c + head


def vit_params(config: ViTConfig) -> int:
    """Patch embedding, class token and positional embedding, per block qkv + projection + MLP + two LayerNorms."""
    d, m = config.hidden_dim, config.mlp_dim
    block = 2 * 2 * d + _linear(d, 3 * d) + _linear(d, d) + _linear(d, m) + _linear(m, d)
    embed = _linear(config.in_chans * config.patch_size**2, d)
    embed += d * config.class_token + config.num_tokens * d * config.pos_embed
    head = _linear(d, config.num_classes) if config.num_classes else 0
    return embed + config.num_blocks * block + 2 * d + head


def resnet_params(config: ResNetConfig) -> int:
    """Convolutions without bias, a BatchNorm after each, projection shortcuts where the shape changes, the fc head."""
    expansion = 1 if config.block == "basic" else 4
    total = config.in_chans * config.width * 49 + 2 * config.width  # conv1 7x7 + bn1
    c_in = config.width
    for stage, blocks in enumerate(config.layers):
        width = config.width * 2**stage
        for j in range(blocks):
            stride = 2 if stage > 0 and j == 0 else 1
            if config.block == "basic":
                convs = [(c_in, width, 3), (width, width, 3)]
            else:
                convs = [(c_in, width, 1), (width, width, 3), (width, width * expansion, 1)]
            total += sum(i * o * k * k + 2 * o for i, o, k in convs)
            if stride != 1 or c_in != width * expansion:  # projection shortcut: 1x1 conv + BatchNorm
                total += c_in * width * expansion + 2 * width * expansion
            c_in = width * expansion
    return total + (_linear(c_in, config.num_classes) if config.num_classes else 0)


def params(config) -> int:
    """Parameters of a reference model's config (Mixer, ViT or ResNet)."""
    if isinstance(config, MixerConfig):
        return mixer_params(config)
    if isinstance(config, ViTConfig):
        return vit_params(config)
    if isinstance(config, ResNetConfig):
        return resnet_params(config)
    raise TypeError(f"no parameter formula for {type(config).__name__}")


@dataclass(frozen=True)
class ZooEntry:
    """A reference model at 224 px, from its config alone (``mixerbench list``)."""

    model: str
    family: str
    img_size: int
    patch_size: int | None  # None for convnets
    tokens: int | None  # S at img_size; None for convnets
    params: int


def zoo() -> list[ZooEntry]:
    """One entry per reference model: name, family, patch size, tokens and parameters at 224 px, from the configs."""
    import architectures

    entries = []
    for name in architectures.list_models():
        traits = architectures.traits(name)
        entries.append(
            ZooEntry(
                model=name,
                family=traits.family,
                img_size=224,
                patch_size=traits.patch_size,
                tokens=traits.tokens(224),
                params=params(architectures.get_config(name)),
            )
        )
    return entries
