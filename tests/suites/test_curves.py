"""The measured-curve suites run the sweep's own configurations over axes wide enough to tell S from S^2.

References: the quick and paper presets' grids as `mixerbench sweep` builds them (``bench.runs.presets``),
and S in closed form, (img_size / patch)^2 (+1 for ViT's class token).
"""

from __future__ import annotations

import pytest

import architectures
from bench.runs import presets
from suites import common, curves


def _sweep_cases(preset_name: str, device: str) -> dict:
    preset = presets.PRESETS[preset_name]
    cases = presets.build_grid(
        preset.entries,
        preset.resolutions,
        preset.patch_sizes,
        batch=preset.batch,
        device=device,
        dtypes=preset.dtypes[device],
        modes=preset.modes,
        threads=preset.threads,
    )
    return {(c.name, c.img_size): c for c in cases}


@pytest.mark.parametrize("series", list(common.QUICK_SERIES))
def test_a_curve_case_is_the_quick_sweeps_case(series):
    sweep = _sweep_cases("quick", "cpu")
    label = common.QUICK_SERIES[series]
    if series == "vit_d64":  # the default attention: the quick sweep's ViT without its attn_backend override
        fused = common.series_case("vit_d64_fused", 128)
        overrides = {k: v for k, v in fused.overrides.items() if k != "attn_backend"}
        assert common.series_case(series, 128) == fused.replace(overrides=overrides, label=label)
        return
    shared = [size for (name, size) in sweep if name == label]
    sizes = common.PIXEL_IMG_SIZES if series in common.PIXEL_SERIES else common.CURVE_IMG_SIZES
    assert set(sizes) & set(shared), "no curve size is a size of the sweep: nothing to compare"
    for size in set(sizes) & set(shared):
        assert common.series_case(series, size) == sweep[label, size]
    assert common.series_case(series, sizes[-1]).threads == 1


@pytest.mark.parametrize("series", list(common.PAPER_SERIES))
def test_a_cuda_curve_case_is_the_paper_sweeps_case(series):
    sweep = _sweep_cases("paper", "cuda")
    for size in (224, 448, 640, 768):
        assert common.series_case(series, size, device="cuda") == sweep[common.PAPER_SERIES[series], size]


def _s(case) -> int:
    return architectures.traits(case.model).tokens(case.img_size, case.patch_size)


def _tokens(img_size: int, patch: int, series: str) -> int:
    return (img_size // patch) ** 2 + (1 if "vit" in series else 0)


def test_the_axes_span_enough_to_tell_linear_from_quadratic():
    for series in common.TOKEN_SERIES:
        s = [_s(common.series_case(series, size)) for size in common.CURVE_IMG_SIZES]
        assert s == [_tokens(size, 4, series) for size in common.CURVE_IMG_SIZES]
        assert len(s) >= 5 and s[-1] / s[0] >= 8
        p = [_s(common.series_case(series, common.CURVE_PATCH_IMG_SIZE, q)) for q in common.CURVE_PATCH_SIZES]
        assert p == [_tokens(common.CURVE_PATCH_IMG_SIZE, q, series) for q in common.CURVE_PATCH_SIZES]
        assert len(p) >= 4 and max(p) / min(p) >= 8
    pixels = [size**2 for size in common.PIXEL_IMG_SIZES]
    assert len(pixels) >= 5 and pixels[-1] / pixels[0] >= 8
    for series in common.PAPER_TOKEN_SERIES:
        s = [_s(common.series_case(series, size, device="cuda")) for size in common.PAPER_IMG_SIZES]
        assert s == [_tokens(size, 16, series) for size in common.PAPER_IMG_SIZES] and s[-1] / s[0] >= 8
        p = [_s(common.series_case(series, common.PAPER_PATCH_IMG_SIZE, q, "cuda")) for q in common.PAPER_PATCH_SIZES]
        assert len(p) >= 4 and max(p) / min(p) >= 8


def test_cuda_curves_are_skipped_without_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NotImplementedError):
        curves.CudaResolution().setup("vit_b16_fused", 224)
