"""bench.analysis.scaling against closed forms (the papers' per-layer costs) and synthetic data with known coefficients."""

from __future__ import annotations

import math

import pytest

from bench.analysis.scaling import crossover_resolution, fit, local_exponents, t_quantile_975
from bench.analysis.stats import fit_measured
from bench.measure import formulas
from bench.measure.counting import build, count
from bench.schema import Case

RESOLUTIONS = (224, 448, 512, 672, 896, 1024)


@pytest.fixture(scope="module")
def vit_b16_counts():
    return [count(Case("vit_b16", r)) for r in RESOLUTIONS]


def test_mixer_is_exactly_linear_with_fixed_tokens_mlp():
    records = [count(Case("mixer_b16", r)) for r in (224, 448, 672, 896)]
    result = fit([r.tokens for r in records], [r.macs for r in records])
    assert result.b == 0.0  # exact: D_S does not depend on S
    assert result.verdict == "linear"
    assert result.crossover_tokens is None
    assert result.quadratic_share == 0.0
    poly = formulas.mixer_polynomial(build(Case("mixer_b16", 224)).config)
    assert (result.a, result.c) == (poly.a, poly.c)
    assert all(abs(e - 1) < 1e-3 for e in result.local_exponents)


def test_mixer_with_growing_tokens_mlp_is_quadratic():
    records = [count(Case("mixer_s16", r, overrides={"scale_tokens_mlp": True})) for r in (224, 448, 672, 896)]
    result = fit([r.tokens for r in records], [r.macs for r in records])
    assert result.verdict == "quadratic"
    assert result.b > 0


def test_vit_b16_quadratic_coefficient_is_2_L_d(vit_b16_counts):
    records = vit_b16_counts
    result = fit([r.tokens for r in records], [r.macs for r in records])
    assert result.b == 2 * 12 * 768 == 18_432  # exact
    assert result.verdict == "quadratic"
    assert result.max_rel_residual == 0.0
    # crossover near 6 d tokens (6 d = 4608 counting only the block matmuls)
    assert result.crossover_tokens == pytest.approx(6 * 768, rel=0.02)
    poly = formulas.vit_polynomial(build(Case("vit_b16", 224)).config)
    assert (result.a, result.b, result.c) == (poly.a, poly.b, poly.c)
    share_at_1024 = result.b * 4097**2 / records[-1].macs
    assert result.quadratic_share == pytest.approx(share_at_1024, rel=1e-12)
    res = crossover_resolution(result.crossover_tokens, 16, prefix_tokens=1)
    assert res == pytest.approx(16 * math.sqrt(result.crossover_tokens - 1))


def test_vit_looks_nearly_linear_on_a_short_range(vit_b16_counts):
    """One log-log slope over 224..896 px says "about linear"; the two-term fit finds the quadratic term."""
    r224, r896 = vit_b16_counts[0], vit_b16_counts[4]
    (slope,) = local_exponents([r224.tokens, r896.tokens], [r224.macs, r896.macs])
    assert slope < 1.2
    closed = formulas.vit_polynomial(build(Case("vit_b16", 224)).config)
    expected = math.log(closed(3137) / closed(197)) / math.log(3137 / 197)
    assert slope == pytest.approx(expected, rel=1e-12)
    result = fit([r.tokens for r in vit_b16_counts[:5]], [r.macs for r in vit_b16_counts[:5]])
    assert result.verdict == "quadratic"
    assert result.quadratic_share > 0.35  # b S^2 carries over a third of the cost at 896 px
    assert result.local_exponents == sorted(result.local_exponents)  # the slope keeps growing


def test_resnet_is_fitted_against_pixels():
    records = [count(Case("resnet50", r)) for r in (224, 448, 672, 896)]
    result = fit([r.img_size**2 for r in records], [r.macs for r in records], axis="pixels")
    assert result.axis == "pixels"
    assert result.b == 0.0
    assert result.verdict == "linear"
    assert result.crossover_tokens is None
    closed = formulas.closed_form(build(Case("resnet50", 896)).config).total
    assert result.predict(896**2) == pytest.approx(closed, rel=1e-12)


def test_vit_by_patch_size_at_fixed_resolution():
    records = [count(Case("vit_b16", 224, p)) for p in (8, 14, 16, 28, 32)]
    result = fit([r.tokens for r in records], [r.macs for r in records], axis="patch_size")
    assert result.b == 18_432  # the stem's cost 3 H^2 D does not depend on the patch: only c changes
    assert result.verdict == "quadratic"


def test_exact_power_laws():
    xs = [10, 20, 40, 80]
    assert local_exponents(xs, [x**2 for x in xs]) == pytest.approx([2.0] * 3)
    result = fit(xs, [3 * x * x for x in xs])
    assert (result.a, result.b, result.c) == (0.0, 3.0, 0.0)
    assert result.crossover is None  # a = 0: the quadratic term dominates everywhere
    assert result.quadratic_share == 1.0


def test_measured_three_points_are_inconclusive():
    result = fit_measured([1, 2, 3], [1.0, 4.1, 8.9])
    assert result.verdict == "inconclusive"
    assert result.b_ci is None


def test_t_quantiles_match_the_tables():
    assert t_quantile_975(1) == 12.706
    assert t_quantile_975(10) == 2.228
    assert t_quantile_975(35) == 2.042  # between table rows: the smaller dof, a wider interval
    assert t_quantile_975(1000) == 1.960
    with pytest.raises(ValueError):
        t_quantile_975(0)


@pytest.mark.parametrize(
    "x, cost, kwargs, message",
    [
        ([1, 2], [1, 2], {}, "3 distinct"),
        ([1, 1, 2, 2], [1, 1, 2, 2], {}, "3 distinct"),
        ([1, 2, 3], [1, 2], {}, "length"),
        ([0, 2, 3], [1, 2, 3], {}, "positive"),
        ([1, 2, 3], [1, float("nan"), 3], {}, "positive"),
        ([1, 2, 3], [1, 2, 3], {"axis": "width"}, "axis"),
    ],
)
def test_bad_input(x, cost, kwargs, message):
    for fitter in (fit, fit_measured):
        with pytest.raises(ValueError, match=message):
            fitter(x, cost, **kwargs)


def test_to_dict_has_the_contract_keys():
    d = fit_measured([1, 2, 3, 4], [1.0, 4.2, 8.8, 16.1]).to_dict()
    for key in ("axis", "a", "b", "c", "crossover_tokens", "quadratic_share", "local_exponents", "verdict", "b_ci"):
        assert key in d
    assert isinstance(d["b_ci"], list)


def test_exact_counts_that_are_not_a_polynomial_are_neither_linear_nor_quadratic():
    # ResNet's stride-2 layers round: off multiples of 32 px its MACs are not a polynomial in pixels
    records = [count(Case("resnet50", r)) for r in (224, 240, 256, 272)]
    result = fit([r.img_size**2 for r in records], [r.macs for r in records], axis="pixels")
    assert result.verdict == "inconclusive" and "not a polynomial" in result.note
    assert result.max_rel_residual > 0
