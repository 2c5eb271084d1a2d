"""The reference models against independent references: timm's models and the papers' tables."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch

import architectures
from architectures import mixer, resnet, vit

# Our preset -> the timm model of the same architecture.
TIMM_TWINS = {
    "mixer_s32": "mixer_s32_224",
    "mixer_s16": "mixer_s16_224",
    "mixer_b32": "mixer_b32_224",
    "mixer_b16": "mixer_b16_224",
    "mixer_l32": "mixer_l32_224",
    "mixer_l16": "mixer_l16_224",
    "vit_ti16": "vit_tiny_patch16_224",
    "vit_s16": "vit_small_patch16_224",
    "vit_b16": "vit_base_patch16_224",
    "vit_b32": "vit_base_patch32_224",
    "vit_l16": "vit_large_patch16_224",
    "vit_h14": "vit_huge_patch14_224",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
}
LARGE = {"mixer_l32", "mixer_l16", "vit_l16", "vit_h14", "resnet152"}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rerandomise_zero_parameters(model: torch.nn.Module) -> list[str]:
    """Give every parameter timm initialises to zero random values; the names changed.

    timm zero-initialises Mixer's head (so every Mixer's logits are 0 whatever its body
    computes) and each ResNet block's last BatchNorm scale (so every residual branch adds
    0): an equivalence test on fresh timm models could not fail there. BatchNorm scales
    get U(0.5, 1.5), everything else N(0, 0.02^2).
    """
    changed = []
    with torch.no_grad():
        for mod_name, module in model.named_modules():
            for p_name, p in module.named_parameters(recurse=False):
                if torch.count_nonzero(p) == 0:
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and p_name == "weight":
                        p.uniform_(0.5, 1.5)
                    else:
                        p.normal_(0.0, 0.02)
                    changed.append(f"{mod_name}.{p_name}")
    return changed


def timm_pair(name: str, img_size: int = 224):
    torch.manual_seed(0)
    reference = timm.create_model(TIMM_TWINS[name], pretrained=False, num_classes=1000).eval()
    rerandomise_zero_parameters(reference)
    with torch.device("meta"):  # ours is built without weights of its own: it takes timm's tensors
        ours = architectures.create(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    return ours, reference


def logits(*models: torch.nn.Module, img_size: int = 224) -> list[torch.Tensor]:
    """Each model's logits for one random image (the same for all)."""
    x = torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return [m(x) for m in models]


def max_logit_diff(a, b, img_size: int = 224) -> float:
    ours, theirs = logits(a, b, img_size=img_size)
    return (ours - theirs).abs().max().item()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in TIMM_TWINS])
def test_timm_weights_load_strictly_and_give_the_same_logits(name):
    ours, reference = timm_pair(name)
    assert n_params(ours) == n_params(reference)
    assert not [n for n, p in reference.named_parameters() if torch.count_nonzero(p) == 0]
    assert not [n for n, t in (*ours.named_parameters(), *ours.named_buffers()) if t.is_meta]
    mine, theirs = logits(ours, reference)
    assert theirs.abs().max() > 1e-3  # the logits are not all zero
    assert (mine - theirs).abs().max().item() <= 1e-4


def _corrupt(module: torch.nn.Module) -> None:
    """A new weight 1% off (not in place: the two models of :func:`timm_pair` share their tensors)."""
    module.weight = torch.nn.Parameter(module.weight.detach() * 1.01)


@pytest.mark.parametrize(
    "name, where",
    [
        ("mixer_s32", lambda m: m.blocks[3].mlp_tokens.fc1),  # a token-mixing MLP
        ("resnet18", lambda m: m.layer4[1].conv2),  # the last conv of the last block (its BN scale was zero in timm)
        ("vit_ti16", lambda m: m.blocks[5].attn.qkv),
    ],
)
def test_the_equivalence_test_fails_for_a_corrupted_layer(name, where):
    ours, reference = timm_pair(name)
    _corrupt(where(ours))
    assert max_logit_diff(ours, reference) > 1e-4  # what the equivalence test would then see


def test_without_rerandomising_timm_hides_a_corrupted_mixer_or_resnet_block():
    """Why the zero-initialised parameters are re-randomised: on fresh timm models the check cannot fail."""
    for name, where in (("mixer_s32", lambda m: m.blocks[3].mlp_tokens.fc1), ("resnet18", lambda m: m.layer4[1].conv2)):
        torch.manual_seed(0)
        reference = timm.create_model(TIMM_TWINS[name], pretrained=False, num_classes=1000).eval()
        ours = architectures.create(name).eval()
        ours.load_state_dict(reference.state_dict(), strict=True)
        _corrupt(where(ours))
        assert max_logit_diff(ours, reference) <= 1e-4


# Tolstikhin et al. 2021, Table 1: parameters in millions, without the classification head.
MIXER_TABLE1_MILLIONS = {
    "mixer_s32": 19,
    "mixer_s16": 18,
    "mixer_b32": 60,
    "mixer_b16": 59,
    "mixer_l32": 206,
    "mixer_l16": 207,
    "mixer_h14": 431,
}


@pytest.mark.parametrize("name", list(MIXER_TABLE1_MILLIONS))
def test_mixer_parameters_match_table1(name):
    with torch.device("meta"):
        model = architectures.create(name, num_classes=0)
    assert round(n_params(model) / 1e6) == MIXER_TABLE1_MILLIONS[name]


def test_the_zoo_is_the_one_the_issue_names():
    assert architectures.list_models() == [
        "mixer_s32",
        "mixer_s16",
        "mixer_b32",
        "mixer_b16",
        "mixer_l32",
        "mixer_l16",
        "mixer_h14",
        "vit_ti16",
        "vit_s16",
        "vit_b16",
        "vit_b32",
        "vit_l16",
        "vit_h14",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
    ]


@pytest.mark.parametrize("name", architectures.list_models())
@pytest.mark.parametrize("img_size", [224, 448])
def test_shapes_on_meta(name, img_size):
    with torch.device("meta"):
        model = architectures.create(name, img_size=img_size, num_classes=10)
        x = torch.empty(2, 3, img_size, img_size)
        features = model.forward_features(x)
        logits = model.forward_head(features)
    assert logits.shape == (2, 10)
    config = model.config
    if architectures.family(name) == "resnet":
        width = 512 * (4 if config.block == "bottleneck" else 1)
        assert features.shape == (2, width, img_size // 32, img_size // 32)
        assert architectures.num_tokens(model) is None
    else:
        patches = (img_size // config.patch_size) ** 2
        tokens = patches + (1 if architectures.family(name) == "vit" else 0)
        assert architectures.num_tokens(model) == tokens
        assert features.shape == (2, tokens, config.hidden_dim)


def test_mixer_token_mixing_is_linear_in_s_with_d_s_fixed_and_scales_on_request():
    model = architectures.create("mixer_s16", img_size=384)  # S = 24^2 = 576
    fc1 = model.blocks[0].mlp_tokens.fc1
    assert (fc1.in_features, fc1.out_features) == (576, 256)  # Linear(S, D_S)
    assert model.blocks[0].mlp_channels.fc1.out_features == 2048  # D_C
    scaled = architectures.create("mixer_s16", img_size=384, scale_tokens_mlp=True)
    assert scaled.blocks[0].mlp_tokens.fc1.out_features == round(256 * 576 / 196)


def test_patch_size_override_builds_a_b_width_mixer_with_patch_8():
    model = architectures.create("mixer_b16", img_size=64, patch_size=8)
    assert model.config.hidden_dim == 768 and model.num_tokens == 64
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_vit_positional_embedding_is_sized_for_the_resolution():
    model = architectures.create("vit_ti16", img_size=320)
    assert model.pos_embed.shape == (1, (320 // 16) ** 2 + 1, 192)


def test_explicit_attention_equals_fused():
    torch.manual_seed(0)
    model = architectures.create("vit_ti16", img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        fused = model(x)
        architectures.set_attention_backend(model, "explicit")
        explicit = model(x)
    assert model.config.attn_backend == "explicit"
    assert (fused - explicit).abs().max().item() <= 1e-5


def test_timm_peer_at_another_resolution():
    model = architectures.create("timm:vit_tiny_patch16_224", img_size=96)
    assert architectures.num_tokens(model) == 37
    assert model(torch.randn(1, 3, 96, 96)).shape == (1, 1000)
    convnet = architectures.create("timm:resnet18", img_size=96)
    assert architectures.num_tokens(convnet) is None


def test_unknown_name_lists_the_closest():
    with pytest.raises(ValueError, match="did you mean mixer_b16"):
        architectures.create("mixer_b61")
    with pytest.raises(ValueError, match="unknown timm model"):
        architectures.create("timm:not_a_model")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"img_size": 225}, "225 is not divisible by patch_size 16"),
        ({"img_size": 0}, "positive"),
        ({"img_size": -32}, "positive"),
        ({"img_size": 224, "patch_size": 0}, "positive"),
        ({"img_size": 224, "patch_size": 15}, "224 is not divisible by patch_size 15"),
        ({"img_size": 224, "not_an_option": 1}, "no option not_an_option"),
    ],
)
def test_bad_sizes_raise_value_error_naming_the_numbers(kwargs, message):
    with pytest.raises(ValueError, match=message):
        architectures.create("vit_b16", **kwargs)


def test_resnet_takes_no_patch_size():
    with pytest.raises(ValueError, match="no patch_size"):
        architectures.create("resnet50", patch_size=16)


def test_duplicate_registration_fails_loudly():
    from architectures import registry

    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register_family(mixer)


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        vit.PRESETS["vit_b16"].hidden_dim = 1
    assert resnet.PRESETS["resnet50"].block == "bottleneck"
