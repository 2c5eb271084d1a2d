"""The seed's structural claims about MLP-Mixer, as checks that measure and report.

1. **Patch-permutation equivariance.** Permuting the input's patches by ``perm`` and the
   Mixer's token-mixing weights by the same ``perm`` (columns of every token-mixing
   ``fc1``, rows and bias of every ``fc2``) gives the same logits; the same input
   permutation without the weight change gives different logits. A ViT without its
   positional embedding and with mean pooling is invariant to patch order; with the
   embedding it is not (unless the embedding's rows are permuted too). A ResNet is
   neither: no weight permutation undoes a patch shuffle for a convolution.
2. **Isotropy.** Every Mixer and ViT block outputs a tensor of the same shape; a
   ResNet's blocks change shape from stage to stage. :func:`layer_activations`
   records per-layer shapes and bytes with forward hooks (it also runs on the meta
   device, so memory reports can use it at any size without allocating).

Patches are numbered in row-major order, as :class:`architectures.layers.PatchEmbed`
flattens them; ``permute_patches(x, perm, P)`` puts input patch ``perm[i]`` at
position ``i``, so token ``i`` of the result is token ``perm[i]`` of the original.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

import architectures
from architectures.layers import check_patch_grid
from architectures.mixer import MixerBlock, MlpMixer
from architectures.vit import VisionTransformer

EQUAL_TOL = 1e-4  # float32 logits "the same": max abs difference at most this
CHANGE_FACTOR = 10  # logits "changed": max abs difference above CHANGE_FACTOR * EQUAL_TOL

# The checks, by family; a check's name states the claim, ``passed`` says whether it held.
CHECKS = {
    "mixer": ("patch_order_changes_logits", "equivariant_with_permuted_token_weights", "isotropy"),
    "vit": (
        "patch_order_changes_logits",
        "equivariant_with_permuted_pos_embed",
        "invariant_without_pos_embed",
        "isotropy",
    ),
    "resnet": ("patch_order_changes_logits", "isotropy"),
    "timm": ("patch_order_changes_logits", "isotropy"),
}
ISOTROPIC_FAMILIES = {"mixer": True, "vit": True, "resnet": False}  # what the seed claims for each


@dataclass(frozen=True)
class CheckResult:
    model: str
    check: str
    passed: bool | None  # None: not applicable (timm peers)
    value: float | dict | None  # the measured number(s)
    detail: str  # one human-readable line for the table

    def to_json(self) -> dict:
        return {"model": self.model, "check": self.check, "passed": self.passed, "value": self.value}


@dataclass(frozen=True)
class LayerActivation:
    name: str  # module path inside the model, e.g. "blocks.3" or "layer2.0"
    shape: tuple[int, ...]
    bytes: int  # numel * element size of the layer's output

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "bytes": self.bytes}


# ---------------------------------------------------------------------------- permutations


def patch_grid(img_size: int, patch_size: int) -> int:
    """Patches per side; raises ValueError unless ``patch_size`` divides ``img_size`` (the models' own check)."""
    return math.isqrt(check_patch_grid(img_size, patch_size))


def random_permutation(n: int, seed: int) -> torch.Tensor:
    """A permutation of ``range(n)`` drawn from ``seed``, never the identity (for n >= 2)."""
    if n < 2:
        raise ValueError(f"need at least 2 items to permute, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if torch.equal(perm, torch.arange(n)):
        perm = perm.roll(1)
    return perm


def permute_patches(images: torch.Tensor, perm: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Rearrange the P x P patches of ``images`` (B, C, H, W): output patch i is input patch perm[i].

    Patches are numbered row-major. The result is a new tensor; ``images`` is unchanged.
    """
    B, C, H, W = images.shape
    if H != W:
        raise ValueError(f"expected square images, got {H} x {W}")
    side = patch_grid(H, patch_size)
    if perm.shape != (side * side,):
        raise ValueError(f"perm has shape {tuple(perm.shape)}, expected ({side * side},) for {side}x{side} patches")
    P = patch_size
    patches = images.reshape(B, C, side, P, side, P).permute(0, 2, 4, 1, 3, 5)  # -> (B, h, w, C, P, P)
    patches = patches.reshape(B, side * side, C, P, P)[:, perm]  # row-major patch order, permuted
    patches = patches.reshape(B, side, side, C, P, P).permute(0, 3, 1, 4, 2, 5)  # -> (B, C, h, P, w, P)
    return patches.reshape(B, C, H, W)


def permute_pixels(images: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Rearrange the pixels of ``images`` (B, C, H, W): output pixel i is input pixel perm[i] (row-major).

    Every channel gets the same permutation.
    """
    B, C, H, W = images.shape
    if perm.shape != (H * W,):
        raise ValueError(f"perm has shape {tuple(perm.shape)}, expected ({H * W},) for {H}x{W} images")
    return images.reshape(B, C, H * W)[:, :, perm].reshape(B, C, H, W)


def permute_token_order(model: nn.Module, perm: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose weights see patch ``perm[i]`` at position ``i``.

    Mixer: every token-mixing MLP's ``fc1`` weight columns and ``fc2`` weight rows and
    bias are permuted; nothing else depends on token order (LayerNorm and the
    channel-mixing MLP act per token, the head averages over tokens). ViT: the rows of
    the positional embedding that belong to patches (the class token's row stays
    first); a ViT without positional embedding is returned unchanged. Then
    ``copy(permute_patches(x, perm, P)) == model(x)`` up to float rounding.
    ``model`` itself is not modified. Other models raise ValueError: no weight
    permutation makes a convolution indifferent to a patch shuffle.
    """
    permuted = copy.deepcopy(model)
    with torch.no_grad():
        if isinstance(permuted, MlpMixer):
            _check_perm(perm, permuted.config.num_patches)
            for block in permuted.blocks:
                if not isinstance(block, MixerBlock):
                    raise TypeError(f"a Mixer block is a MixerBlock, not {type(block).__name__}")
                fc1, fc2 = block.mlp_tokens.fc1, block.mlp_tokens.fc2  # Linear(S, D_S), Linear(D_S, S)
                fc1.weight.copy_(fc1.weight[:, perm])  # input i of the token MLP reads patch perm[i]
                fc2.weight.copy_(fc2.weight[perm, :])  # output i writes to the token at position i
                fc2.bias.copy_(fc2.bias[perm])
        elif isinstance(permuted, VisionTransformer):
            _check_perm(perm, permuted.config.num_patches)
            if permuted.pos_embed is not None:
                offset = int(permuted.config.class_token)  # (1, [cls] + N patches, D)
                rows = permuted.pos_embed[:, offset:]
                permuted.pos_embed[:, offset:] = rows[:, perm]
        else:
            raise ValueError(
                f"{type(model).__name__} has no token-order weights to permute (reference Mixer and ViT only)"
            )
    return permuted


def _check_perm(perm: torch.Tensor, n: int) -> None:
    if perm.shape != (n,) or not torch.equal(perm.sort().values, torch.arange(n)):
        raise ValueError(f"expected a permutation of {n} patches, got shape {tuple(perm.shape)}")


# ---------------------------------------------------------------------------- isotropy


def model_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The stem and the residual blocks of a Mixer, ViT or ResNet (reference or timm), in order.

    Mixer and ViT: the patch embedding (``stem`` / ``patch_embed``), then ``blocks.i``.
    ResNet: the stem (its ``maxpool``), then ``layerK.j`` for every block of the 4 stages.
    """
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)):
        stem_name = "stem" if hasattr(model, "stem") else "patch_embed"
        layers = [(stem_name, getattr(model, stem_name))]
        return layers + [(f"blocks.{i}", block) for i, block in enumerate(blocks)]
    stages = [s for k in range(1, 5) if isinstance(s := getattr(model, f"layer{k}", None), nn.Sequential)]
    if len(stages) == 4 and hasattr(model, "maxpool"):
        layers = [("stem", model.maxpool)]
        for k, stage in enumerate(stages, start=1):
            layers += [(f"layer{k}.{j}", block) for j, block in enumerate(stage)]
        return layers
    raise ValueError(f"{type(model).__name__} has neither .blocks nor layer1..layer4: cannot list its layers")


def layer_activations(model: nn.Module, x: torch.Tensor) -> list[LayerActivation]:
    """Run ``model(x)`` once and record each layer's output shape and bytes (see :func:`model_layers`).

    Works with meta tensors (model and input built under ``torch.device("meta")``) for
    the reference models, so shapes and bytes come without allocating.
    """
    records: list[LayerActivation] = []
    handles = []

    def hook_for(name: str):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            records.append(LayerActivation(name, tuple(out.shape), out.numel() * out.element_size()))

        return hook

    try:
        for name, module in model_layers(model):
            handles.append(module.register_forward_hook(hook_for(name)))
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return records


def is_isotropic(layers: list[LayerActivation]) -> bool:
    """True when every block (the stem excluded: a ViT's lacks the class token) has the same output shape."""
    shapes = {layer.shape for layer in layers if layer.name not in ("stem", "patch_embed")}
    return len(shapes) == 1


# ---------------------------------------------------------------------------- the checks


@dataclass(frozen=True)
class ProbeConfig:
    """The small configuration the checks build (seconds on a CPU)."""

    img_size: int = 64
    patch_size: int = 8  # the patch grid; also the Mixer's and ViT's patch size
    num_blocks: int = 2  # Mixer and ViT depth (ResNets keep their preset depth)
    batch: int = 4
    num_classes: int = 10
    seed: int = 0

    def __post_init__(self):
        side = patch_grid(self.img_size, self.patch_size)
        if side * side < 2:
            raise ValueError(
                f"img_size {self.img_size} with patch_size {self.patch_size} gives one patch: nothing to permute"
            )
        if self.num_blocks <= 0 or self.batch <= 0:
            raise ValueError(f"num_blocks and batch must be positive, got {self.num_blocks} and {self.batch}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")


def build_probe_model(name: str, probe: ProbeConfig, **overrides) -> nn.Module:
    """Reference model ``name`` in the probe's small configuration, random weights from ``probe.seed``."""
    torch.manual_seed(probe.seed)
    fam = architectures.family(name)
    if fam in ("mixer", "vit"):
        overrides = dict(patch_size=probe.patch_size, num_blocks=probe.num_blocks, **overrides)
    elif fam != "resnet":
        raise ValueError(f"{name} is not a reference model")
    return architectures.create(name, img_size=probe.img_size, num_classes=probe.num_classes, **overrides).eval()


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def check_model(name: str, probe: ProbeConfig = ProbeConfig()) -> list[CheckResult]:
    """Run every check of ``name``'s family (see ``CHECKS``); timm peers get 'not applicable' rows."""
    fam = architectures.family(name)
    if fam == "timm":
        why = "not applicable: timm peers are not rewired; checks run on the reference models"
        return [CheckResult(name, check, None, None, why) for check in CHECKS["timm"]]
    model = build_probe_model(name, probe)
    side = probe.img_size // probe.patch_size
    perm = random_permutation(side * side, probe.seed + 1)
    x = torch.randn(probe.batch, 3, probe.img_size, probe.img_size, generator=torch.Generator().manual_seed(probe.seed))
    x_perm = permute_patches(x, perm, probe.patch_size)
    with torch.no_grad():
        logits = model(x)
        results = [_changes(name, max_abs_diff(model(x_perm), logits), "same weights, patches permuted")]
        if fam == "mixer":
            diff = max_abs_diff(permute_token_order(model, perm)(x_perm), logits)
            results.append(
                _same(name, "equivariant_with_permuted_token_weights", diff, "token-mixing weights permuted too")
            )
        if fam == "vit":
            diff = max_abs_diff(permute_token_order(model, perm)(x_perm), logits)
            results.append(
                _same(name, "equivariant_with_permuted_pos_embed", diff, "positional embedding rows permuted too")
            )
            plain = build_probe_model(name, probe, pos_embed=False, class_token=False, global_pool="avg")
            diff = max_abs_diff(plain(x_perm), plain(x))
            results.append(
                _same(name, "invariant_without_pos_embed", diff, "no pos_embed, no class token, mean pooling")
            )
    results.append(_isotropy(name, fam, layer_activations(model, x)))
    return results


def _same(model: str, check: str, diff: float, how: str) -> CheckResult:
    passed = diff <= EQUAL_TOL
    verdict = "same logits" if passed else "logits differ"
    return CheckResult(
        model, check, passed, diff, f"{verdict}: max |diff| {diff:.2e} (<= {EQUAL_TOL:.0e} to pass; {how})"
    )


def _changes(model: str, diff: float, how: str) -> CheckResult:
    threshold = CHANGE_FACTOR * EQUAL_TOL
    passed = diff > threshold
    verdict = "logits change" if passed else "logits barely change"
    return CheckResult(
        model,
        "patch_order_changes_logits",
        passed,
        diff,
        f"{verdict}: max |diff| {diff:.2e} (> {threshold:.0e} to pass; {how})",
    )


def _isotropy(model: str, fam: str, layers: list[LayerActivation]) -> CheckResult:
    isotropic = is_isotropic(layers)
    expected = ISOTROPIC_FAMILIES[fam]
    blocks = [layer for layer in layers if layer.name not in ("stem", "patch_embed")]
    first, last = blocks[0], blocks[-1]
    if isotropic:
        detail = f"isotropic: {len(blocks)} blocks, each {first.shape} = {first.bytes:,} bytes"
    else:
        distinct = len({layer.shape for layer in blocks})
        detail = (
            f"not isotropic: {len(blocks)} blocks, {distinct} shapes, "
            f"{first.shape} {first.bytes:,} B -> {last.shape} {last.bytes:,} B"
        )
    detail += f" (expected {'isotropic' if expected else 'not isotropic'})"
    value = {"isotropic": isotropic, "expected": expected, "layers": [layer.to_json() for layer in layers]}
    return CheckResult(model, "isotropy", isotropic == expected, value, detail)


def run_checks(names: list[str], probe: ProbeConfig = ProbeConfig(), progress=None) -> list[CheckResult]:
    """All checks for every model in ``names``, in order; ``progress(done, total, model)`` as each model starts and at the end."""
    results = []
    for i, name in enumerate(names):
        if progress:
            progress(i, len(names), name)
        results += check_model(name, probe)
    if progress and names:
        progress(len(names), len(names), "checked")
    return results
