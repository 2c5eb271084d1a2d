"""The deterministic asv suites (flops, scaling, cost, fvcore_count): typed setup_cache results that asv can pickle,
read by attribute, giving the published or closed-form values.

References: ViT-B/16 has 86,567,656 parameters at 224 px (timm's vit_base_patch16_224 with 1,000 classes); its
attention makes MACs quadratic in S with b = 2 * L * d = 2 * 12 * 768 = 18,432 MACs per token squared, and a Mixer
with D_S fixed has b = 0 (docs/methodology/counting.md). asv calls a method as ``method(cache, *params)``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from bench.schema import Case
from helpers import ROOT
from suites import common, cost, flops, fvcore_count, scaling


def _through_asv(cache):
    """What a benchmark method receives: asv pickles the setup_cache result to a file and loads it again."""
    return pickle.loads(pickle.dumps(cache))


@pytest.fixture(scope="module")
def counted():
    """The one setup_cache of flops.Count, scaling.MacsFit and cost.Step, as their methods receive it."""
    return _through_asv(flops.Count().setup_cache())


def test_the_three_deterministic_suites_share_one_setup_cache(counted):
    """asv runs one ``setup_cache`` per function (its source line): the three suites name the same one."""
    assert flops.Count.setup_cache is scaling.MacsFit.setup_cache is cost.Step.setup_cache
    assert set(counted.counts) == {(m, s) for m in common.COUNTED_MODELS for s in common.RESOLUTIONS}
    assert set(counted.fits) == set(common.SCALED_MODELS)
    assert set(counted.costs) == {
        (m, s, x) for m in common.COUNTED_MODELS for s in common.RESOLUTIONS for x in common.MODES
    }


def test_count_tracks_params_and_gmacs_by_attribute(counted):
    cache = counted
    assert flops.Count().track_params(cache, "vit_b16", 224) == 86_567_656
    # ViT-B/16 at 224: 17.58 GMACs in fvcore's convention (the reference's table of MACs)
    assert flops.Count().track_gmacs(cache, "vit_b16", 224) == pytest.approx(17.5827, abs=1e-4)


def test_macs_fit_tracks_the_closed_form_quadratic_coefficient(counted):
    suite = scaling.MacsFit()
    cache = counted
    assert suite.track_quadratic_coefficient(cache, "vit_b16") == pytest.approx(2 * 12 * 768)
    assert suite.track_quadratic_coefficient(cache, "mixer_b16") == pytest.approx(0, abs=1e-6)
    assert suite.track_verdict(cache, "vit_b16") == common.VERDICT_CODES["quadratic"]
    assert suite.track_verdict(cache, "mixer_b16") == common.VERDICT_CODES["linear"]
    assert 0 < suite.track_quadratic_share_percent(cache, "vit_b16") < 100
    assert suite.track_crossover_tokens(cache, "mixer_b16") != suite.track_crossover_tokens(cache, "mixer_b16")  # NaN


def test_step_tracks_the_cost_of_each_case(counted):
    suite = cost.Step()
    cache = counted
    infer, train = (suite.track_peak_activation_bytes(cache, "vit_s16", 224, m) for m in ("infer", "train"))
    assert 0 < infer < train  # training keeps activations for the backward pass
    # every operator call that does work moves bytes: at least the 197 x 384 float32 tokens of each block's output
    assert suite.track_bytes_moved(cache, "vit_s16", 224, "infer") > 12 * 197 * 384 * 4
    assert suite.track_ops(cache, "vit_s16", 224, "infer") < suite.track_ops(cache, "vit_s16", 224, "train")


def test_fvcore_tracks_by_attribute(monkeypatch):
    monkeypatch.setattr(fvcore_count, "TIMED_MODELS", ("vit_s16",))
    suite = fvcore_count.Fvcore()
    cache = _through_asv(suite.setup_cache())
    s, d, blocks = (common.TIMED_IMG_SIZE // 16) ** 2 + 1, 384, 12
    # fvcore's matmul MACs of ViT-S/16: per block 12 S d^2 (qkv, proj, MLP of 4d) + 2 S^2 d (attention), plus the
    # patch embedding (S - 1) x 3 x 16 x 16 x d and the 1,000-class head of d
    closed = blocks * (12 * s * d * d + 2 * s * s * d) + (s - 1) * 3 * 16 * 16 * d + d * 1000
    assert suite.track_fvcore_matmul_gmacs(cache, "vit_s16") == pytest.approx(closed / 1e9, rel=1e-12)
    assert suite.track_fvcore_gmacs(cache, "vit_s16") >= suite.track_fvcore_matmul_gmacs(cache, "vit_s16")
    assert suite.track_fvcore_activations(cache, "vit_s16") > 0


def test_fvcore_axis_cases_are_the_curves_cases(monkeypatch):
    monkeypatch.setattr(fvcore_count, "_AXIS_GRID", (("patch_size", ("vit_d64_fused",), (16,)),))
    suite = fvcore_count.FvcorePatchSize()
    cache = _through_asv(suite.setup_cache())
    case = fvcore_count._axis_case("patch_size", "vit_d64_fused", 16)
    assert isinstance(case, Case) and case == common.series_case("vit_d64_fused", common.CURVE_PATCH_IMG_SIZE, 16)
    assert (
        suite.track_fvcore_activations(cache, "vit_d64_fused", 16)
        == cache["patch_size", "vit_d64_fused", 16].activations
    )


def test_only_asvs_fork_server_preimports_the_compiler_stack():
    # asv's fork server (`asv.benchmark run_server ...`) hands torch._dynamo to every benchmark process it forks (a
    # training step imports it); discovery and setup_cache, fresh interpreters, do not pay for it.
    script = (
        "import importlib, sys\n"
        "sys.argv[1:] = ['discover', 'suites', 'out.json']\n"
        "import suites.common\n"
        "print('torch._dynamo' in sys.modules)\n"
        "sys.argv[1:] = ['run_server', 'suites', 'socket']\n"
        "importlib.reload(suites.common)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr
