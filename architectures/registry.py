"""One registry for the reference models and timm peers.

Every family module (``mixer``, ``vit``, ``resnet``) exposes ``PRESETS`` (name -> frozen
config) and ``build(name, img_size, patch_size, num_classes, **overrides)``. Registering
a name twice is an error, as is asking for a name that does not exist.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from types import ModuleType

from torch import nn

from . import mixer, resnet, vit

TIMM_PREFIX = "timm:"
_FAMILIES: dict[str, ModuleType] = {}  # model name -> family module


def register_family(module: ModuleType) -> None:
    for name in module.PRESETS:
        if name in _FAMILIES:
            raise RuntimeError(f"model {name!r} is registered twice ({_FAMILIES[name].__name__} and {module.__name__})")
        _FAMILIES[name] = module


for _module in (mixer, vit, resnet):
    register_family(_module)


def list_models() -> list[str]:
    """The reference models, in registration order (Mixer, ViT, ResNet; small to large)."""
    return list(_FAMILIES)


def family(name: str) -> str:
    """'mixer', 'vit', 'resnet' for reference models, 'timm' for ``timm:<name>`` peers."""
    if name.startswith(TIMM_PREFIX):
        return "timm"
    return _family_module(name).__name__.rsplit(".", 1)[-1]


def get_config(name: str):
    """The preset's frozen config (at 224 px), for reference models."""
    return _family_module(name).PRESETS[name]


def _family_module(name: str) -> ModuleType:
    if name not in _FAMILIES:
        close = difflib.get_close_matches(name, list(_FAMILIES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(_FAMILIES)}"
        raise ValueError(f"unknown model {name!r}{hint} (or timm:<name> for any timm model)")
    return _FAMILIES[name]


def create(
    name: str, img_size: int = 224, patch_size: int | None = None, num_classes: int = 1000, **overrides
) -> nn.Module:
    """Build model ``name`` with random weights for square ``img_size`` inputs.

    ``patch_size`` overrides the preset's patch (Mixer, ViT); ``overrides`` replace any
    other field of the family's config dataclass (e.g. ``attn_backend="explicit"`` for
    a ViT, ``tokens_mlp_dim=512`` for a Mixer), or are passed to ``timm.create_model``
    for ``timm:<name>`` peers. Every returned model has ``forward_features`` and
    ``forward_head``; ``forward(x) == forward_head(forward_features(x))``.
    Use ``with torch.device("meta"):`` to build without allocating weights.
    """
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0:
        raise ValueError(f"img_size must be a positive integer, got {img_size!r}")
    if patch_size is not None and (isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size <= 0):
        raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
    if name.startswith(TIMM_PREFIX):
        return _create_timm(name[len(TIMM_PREFIX) :], img_size, patch_size, num_classes, **overrides)
    module = _family_module(name)
    fields = {f.name for f in dataclasses.fields(module.PRESETS[name])}
    extra = {"scale_tokens_mlp"} if module is mixer else set()
    unknown = sorted(set(overrides) - fields - extra)
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(unknown)}; options: {', '.join(sorted(fields | extra))}")
    return module.build(name, img_size=img_size, patch_size=patch_size, num_classes=num_classes, **overrides)


def _create_timm(timm_name: str, img_size: int, patch_size: int | None, num_classes: int, **overrides) -> nn.Module:
    import timm

    if not timm.is_model(timm_name):
        close = difflib.get_close_matches(timm_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise ValueError(f"unknown timm model {timm_name!r}{hint}")
    kwargs = dict(overrides, num_classes=num_classes)
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    try:
        # Patch-based models (ViT, Mixer, Swin...) are built for one size; convnets take any.
        return timm.create_model(timm_name, pretrained=False, img_size=img_size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise ValueError(f"timm model {timm_name!r} rejected {kwargs}: {exc}") from None
    if patch_size is not None:
        raise ValueError(f"timm model {timm_name!r} has no patch_size")
    return timm.create_model(timm_name, pretrained=False, **kwargs)


@dataclasses.dataclass(frozen=True)
class ModelTraits:
    """What the harness needs to know about a model before it builds one at a size.

    ``patch_size`` is None for convnets (they have no tokens; their cost is fitted
    against pixels); ``prefix_tokens`` are the tokens besides the patches (ViT's class
    token); ``channels_last`` is the memory format the model runs fastest in (convnets).
    """

    family: str  # "mixer", "vit", "resnet" or "timm"
    patch_size: int | None
    prefix_tokens: int

    @property
    def has_tokens(self) -> bool:
        return self.patch_size is not None

    @property
    def channels_last(self) -> bool:
        return not self.has_tokens

    def tokens(self, img_size: int, patch_size: int | None = None) -> int | None:
        """S at ``img_size`` (with ``patch_size`` instead of the model's own), None for convnets."""
        if self.patch_size is None:  # a convnet
            return None
        return (img_size // (patch_size or self.patch_size)) ** 2 + self.prefix_tokens


@functools.cache
def traits(name: str) -> ModelTraits:
    """The :class:`ModelTraits` of a reference model (from its config) or a timm peer (built once on meta)."""
    if not name.startswith(TIMM_PREFIX):
        config = get_config(name)
        patch = getattr(config, "patch_size", None)
        prefix = 1 if getattr(config, "class_token", False) else 0
        return ModelTraits(family(name), patch, prefix)
    import torch

    with torch.device("meta"):
        net = create(name)
    embed = getattr(net, "patch_embed", None) or getattr(net, "stem", None)
    size = getattr(embed, "patch_size", None) if num_tokens(net) is not None else None
    patch = None if size is None else int(size[0]) if isinstance(size, (tuple, list)) else int(size)
    return ModelTraits("timm", patch, int(getattr(net, "num_prefix_tokens", 0)) if patch else 0)


def num_tokens(model: nn.Module) -> int | None:
    """S, the number of tokens a model mixes (class token included), or None for a convnet.

    Works for the reference models (their ``num_tokens`` attribute) and for timm's
    patch-based models (``patch_embed.num_patches`` + prefix tokens, or Mixer's stem).
    """
    own = getattr(model, "num_tokens", None)
    if isinstance(own, int):
        return own
    embed = getattr(model, "patch_embed", None) or getattr(model, "stem", None)
    patches = getattr(embed, "num_patches", None)
    if patches is None:
        return None
    return patches + getattr(model, "num_prefix_tokens", 0)
