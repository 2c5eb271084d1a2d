"""Reference MLP-Mixer, ViT and ResNet models, and one registry for them and timm peers.

>>> import architectures
>>> model = architectures.create("mixer_b16", img_size=384)
>>> architectures.list_models()[:3]
['mixer_s32', 'mixer_s16', 'mixer_b32']
"""

from .registry import TIMM_PREFIX, ModelTraits, create, family, get_config, list_models, num_tokens, traits
from .vit import set_attention_backend

__all__ = [
    "TIMM_PREFIX",
    "ModelTraits",
    "create",
    "family",
    "get_config",
    "list_models",
    "num_tokens",
    "set_attention_backend",
    "traits",
]
