"""Patch-permutation equivariance and isotropy, against independent references.

References: explicit per-patch / per-pixel loops for the permutations, timm's own
MlpMixer and VisionTransformer (loaded with our permuted weights) for the equivariance
claims, and closed-form shapes (S = (H/P)^2, ResNet stage widths and strides) for isotropy.
"""

from __future__ import annotations

import json

import pytest
import torch
from timm.models.mlp_mixer import MlpMixer as TimmMixer
from timm.models.vision_transformer import VisionTransformer as TimmViT

import architectures
from bench import cli
from bench.experiments.properties import (
    EQUAL_TOL,
    ProbeConfig,
    check_model,
    is_isotropic,
    layer_activations,
    permute_patches,
    permute_pixels,
    permute_token_order,
    random_permutation,
)

IMG, PATCH, S = 64, 8, 64  # S = (64 / 8)^2


def images(batch: int = 3, channels: int = 3, size: int = IMG, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def small(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return architectures.create(name, img_size=IMG, patch_size=PATCH, num_classes=10, num_blocks=2, **overrides).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------- permutations


def test_permute_patches_matches_an_explicit_loop():
    x = images(size=24)
    P, side = 8, 3
    perm = random_permutation(side * side, seed=5)
    expected = torch.empty_like(x)
    for i in range(side * side):
        src = int(perm[i])
        r, c, sr, sc = i // side, i % side, src // side, src % side  # row-major patch numbering
        expected[:, :, r * P : (r + 1) * P, c * P : (c + 1) * P] = x[:, :, sr * P : (sr + 1) * P, sc * P : (sc + 1) * P]
    assert torch.equal(permute_patches(x, perm, P), expected)


def test_permute_patches_is_undone_by_the_inverse_permutation():
    x = images()
    perm = random_permutation(S, seed=1)
    shuffled = permute_patches(x, perm, PATCH)
    assert not torch.equal(shuffled, x)
    assert torch.equal(permute_patches(shuffled, torch.argsort(perm), PATCH), x)


def test_permute_pixels_matches_an_explicit_loop():
    x = images(batch=2, channels=2, size=5)
    perm = random_permutation(25, seed=3)
    expected = torch.empty_like(x)
    for i in range(25):
        src = int(perm[i])
        expected[:, :, i // 5, i % 5] = x[:, :, src // 5, src % 5]
    assert torch.equal(permute_pixels(x, perm), expected)


def test_random_permutation_is_a_permutation_and_never_the_identity():
    for seed in range(50):
        perm = random_permutation(2, seed)
        assert perm.tolist() == [1, 0]
    perm = random_permutation(100, seed=0)
    assert sorted(perm.tolist()) == list(range(100))
    with pytest.raises(ValueError, match="at least 2"):
        random_permutation(1, seed=0)


def test_bad_permutations_and_grids_are_rejected():
    x = images()
    with pytest.raises(ValueError, match="expected \\(64,\\)"):
        permute_patches(x, torch.arange(63), PATCH)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        permute_patches(x, torch.arange(S), 7)
    with pytest.raises(ValueError, match="permutation of 64"):
        permute_token_order(small("mixer_s16"), torch.zeros(S, dtype=torch.long))


# ---------------------------------------------------------------------------- equivariance


def test_mixer_with_permuted_token_weights_gives_the_same_logits_on_permuted_patches():
    model = small("mixer_s16")
    x = images()
    perm = random_permutation(S, seed=1)
    x_perm = permute_patches(x, perm, PATCH)
    permuted = permute_token_order(model, perm)
    with torch.no_grad():
        logits = model(x)
        assert max_diff(permuted(x_perm), logits) <= EQUAL_TOL
        assert max_diff(model(x_perm), logits) > 10 * EQUAL_TOL  # without the weight change they differ
        wrong = permute_token_order(model, torch.argsort(perm))  # the inverse is the wrong permutation
        assert max_diff(wrong(x_perm), logits) > 10 * EQUAL_TOL
    # the original is untouched
    assert torch.equal(model.blocks[0].mlp_tokens.fc1.weight, small("mixer_s16").blocks[0].mlp_tokens.fc1.weight)


def test_the_permuted_mixer_weights_work_in_timms_mixer_too():
    """Independent reference: timm's MlpMixer, loaded with our permuted state dict."""
    model = small("mixer_s16")
    perm = random_permutation(S, seed=2)
    reference = TimmMixer(img_size=IMG, patch_size=PATCH, num_blocks=2, embed_dim=512, num_classes=10).eval()
    reference.load_state_dict(permute_token_order(model, perm).state_dict(), strict=True)
    x = images()
    with torch.no_grad():
        assert max_diff(reference(permute_patches(x, perm, PATCH)), model(x)) <= EQUAL_TOL


def test_vit_pos_embed_permutation_keeps_the_class_token_first_and_works_in_timms_vit():
    model = small("vit_s16")
    perm = random_permutation(S, seed=4)
    permuted = permute_token_order(model, perm)
    assert torch.equal(permuted.pos_embed[:, 0], model.pos_embed[:, 0])
    assert torch.equal(permuted.pos_embed[:, 1:], model.pos_embed[:, 1:][:, perm])
    reference = TimmViT(img_size=IMG, patch_size=PATCH, embed_dim=384, depth=2, num_heads=6, num_classes=10).eval()
    reference.load_state_dict(permuted.state_dict(), strict=True)
    x = images()
    x_perm = permute_patches(x, perm, PATCH)
    with torch.no_grad():
        assert max_diff(reference(x_perm), model(x)) <= EQUAL_TOL
        assert max_diff(model(x_perm), model(x)) > 10 * EQUAL_TOL


def test_vit_without_pos_embed_and_with_mean_pooling_is_invariant():
    model = small("vit_s16", pos_embed=False, class_token=False, global_pool="avg")
    x = images()
    with torch.no_grad():
        assert max_diff(model(permute_patches(x, random_permutation(S, seed=6), PATCH)), model(x)) <= EQUAL_TOL


def test_resnet_has_no_token_weights_to_permute():
    with pytest.raises(ValueError, match="no token-order weights"):
        permute_token_order(architectures.create("resnet18", img_size=IMG, num_classes=10), torch.arange(S))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mixer_s16", ["patch_order_changes_logits", "equivariant_with_permuted_token_weights", "isotropy"]),
        (
            "vit_ti16",
            [
                "patch_order_changes_logits",
                "equivariant_with_permuted_pos_embed",
                "invariant_without_pos_embed",
                "isotropy",
            ],
        ),
        ("resnet18", ["patch_order_changes_logits", "isotropy"]),
    ],
)
def test_every_check_passes_for_each_family(name, expected):
    results = check_model(name)
    assert [r.check for r in results] == expected
    assert all(r.passed is True for r in results), [r.detail for r in results]
    values = {r.check: r.value for r in results}
    assert values["patch_order_changes_logits"] > 1e-3
    for check in (
        "equivariant_with_permuted_token_weights",
        "equivariant_with_permuted_pos_embed",
        "invariant_without_pos_embed",
    ):
        if check in values:
            assert values[check] <= EQUAL_TOL


# ---------------------------------------------------------------------------- isotropy


def test_mixer_and_vit_blocks_all_have_one_shape_with_closed_form_bytes():
    mixer = layer_activations(small("mixer_s16"), images(batch=2))
    assert [a.name for a in mixer] == ["stem", "blocks.0", "blocks.1"]
    assert all(a.shape == (2, S, 512) and a.bytes == 2 * S * 512 * 4 for a in mixer)
    vit = layer_activations(small("vit_s16"), images(batch=2))
    assert vit[0].shape == (2, S, 384)  # the patch embedding: no class token yet
    assert all(a.shape == (2, S + 1, 384) for a in vit[1:])
    assert is_isotropic(mixer) and is_isotropic(vit)


def test_resnet_blocks_change_shape_stage_by_stage():
    model = architectures.create("resnet18", img_size=IMG, num_classes=10).eval()
    layers = layer_activations(model, images(batch=2))
    # stem: /4; stages 1-4: widths 64, 128, 256, 512, strides 1, 2, 2, 2; two blocks each
    side = [16, 16, 16, 8, 8, 4, 4, 2, 2]
    width = [64, 64, 64, 128, 128, 256, 256, 512, 512]
    assert [a.name for a in layers] == ["stem"] + [f"layer{k}.{j}" for k in range(1, 5) for j in range(2)]
    assert [a.shape for a in layers] == [(2, w, s, s) for w, s in zip(width, side)]
    assert [a.bytes for a in layers] == [2 * w * s * s * 4 for w, s in zip(width, side)]
    assert not is_isotropic(layers)


def test_layer_activations_run_on_the_meta_device_for_memory_reports():
    with torch.device("meta"):
        model = architectures.create("vit_b16", img_size=384)
        layers = layer_activations(model, torch.empty(8, 3, 384, 384))
    assert len(layers) == 13
    assert all(a.shape == (8, 577, 768) and a.bytes == 8 * 577 * 768 * 4 for a in layers[1:])
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


# ---------------------------------------------------------------------------- the command


def test_json_output_lists_model_check_passed_value(capsys):
    code = cli.main(["properties", "--models", "mixer_s16,timm:resnet18", "--format", "json", "--img-size", "32"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert all(set(row) == {"model", "check", "passed", "value"} for row in rows)
    mixer = [r for r in rows if r["model"] == "mixer_s16"]
    assert [r["passed"] for r in mixer] == [True, True, True]
    assert mixer[2]["value"]["layers"][1]["shape"] == [4, 16, 512]  # S = (32 / 8)^2
    peer = [r for r in rows if r["model"] == "timm:resnet18"]
    assert peer and all(r["passed"] is None and r["value"] is None for r in peer)


def test_table_output(capsys):
    assert cli.main(["properties", "--models", "resnet18", "--img-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "PASS" in out and "FAIL" not in out and "not isotropic" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--img-size", "60"], "img_size 60 is not divisible by patch_size 8"),
        (["--img-size", "8"], "one patch"),
        (["--models", "mixer_b61"], "did you mean mixer_b16"),
        (["--patch-size", "0"], "positive integer"),
        (["--format", "csv"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        code = cli.main(["properties", *argv])
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_probe_config_validates():
    with pytest.raises(ValueError, match="one patch"):
        ProbeConfig(img_size=8, patch_size=8)
