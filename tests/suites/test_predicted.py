"""The predicted-time suite as the pull-request gate reads it, without running asv.

The suite's tracks are computed on the real code, then with a plant applied in this process
(what the commit would change): ViT's default attention made explicit, and one extra copy
per Mixer block (the token-mixing output made contiguous after its transpose); and with a
comment-only change of Mixer's forward. The gate's rule at factor 1.0 (``bench.site.gate.mark``:
asv continuous's comparison) must flag exactly the tracks a plant touches, and nothing for the
comment.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import textwrap

import pytest

from architectures import mixer, vit
from bench.analysis import predict
from suites import predicted

pytestmark = pytest.mark.slow  # a dozen cases counted on meta (about a second each)

MODELS = ("mixer_b16", "vit_b16", "vit_b16_explicit")


def _tracks(monkeypatch) -> dict[tuple[str, int, str], float]:
    """Every track of the suite, as asv computes them: setup_cache in a fresh state, pickled, read by track_ms."""
    monkeypatch.setattr(predict, "_COSTS", {})  # the code may have changed since the last count: count again
    suite = predicted.Step()
    cache = pickle.loads(pickle.dumps(suite.setup_cache()))
    return {key: suite.track_ms(cache, *key) for key in cache}


def _flagged(before: dict, after: dict) -> set[tuple[str, int, str]]:
    """The tracks the pull-request gate's counts group (factor 1.0) judges worse: ``mixerbench gate``'s
    ``mark``, asv continuous's own rule (track_ values have no samples)."""
    pytest.importorskip("asv")
    from bench.site import gate

    assert gate.COUNTS.factor == 1.0 and gate.COUNTS.gates
    return {key for key in before if gate.mark(before[key], after[key], None, None, gate.COUNTS.factor) == "worse"}


def _forward_with_copy(self, x):  # MixerBlock.forward with one extra copy per block (the plant)
    y = self.norm1(x).transpose(1, 2)
    x = x + self.mlp_tokens(y).transpose(1, 2).contiguous()
    x = x + self.mlp_channels(self.norm2(x))
    return x


def _commented(function):
    """``function`` compiled again from its source with a comment added: a change that does nothing."""
    source = textwrap.dedent(inspect.getsource(function))
    head, body = source.split("\n", 1)
    namespace: dict = {}
    exec(compile(head + "\n    # a comment-only change\n" + body, "<comment-only>", "exec"), vars(mixer), namespace)
    return namespace[function.__name__]


@pytest.fixture(scope="module")
def baseline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predicted, "PREDICTED_MODELS", MODELS)
        mp.setattr(predicted, "PREDICTED_IMG_SIZES", (224,))
        yield _tracks(mp)


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(predicted, "PREDICTED_MODELS", MODELS)
    monkeypatch.setattr(predicted, "PREDICTED_IMG_SIZES", (224,))
    return monkeypatch


def test_tracks_are_predict_case_of_the_paper_cases(baseline):
    assert set(baseline) == {(m, 224, gpu) for m in MODELS for gpu in predicted.PREDICTED_GPUS}
    case = predicted.predicted_case("vit_b16_explicit", 224)
    assert (case.batch, case.dtype, case.device, case.attention) == (32, "bfloat16", "cuda", "explicit")
    assert baseline["vit_b16_explicit", 224, "rtx-4090"] == predict.predict_case(case, "rtx-4090").step_ms
    # Explicit attention moves the S x S matrix the fused kernel never writes: slower on every device.
    for gpu in predicted.PREDICTED_GPUS:
        assert baseline["vit_b16_explicit", 224, gpu] > baseline["vit_b16", 224, gpu]


def test_explicit_default_attention_is_flagged(baseline, small):
    small.setitem(vit.PRESETS, "vit_b16", dataclasses.replace(vit.PRESETS["vit_b16"], attn_backend="explicit"))
    after = _tracks(small)
    assert _flagged(baseline, after) == {("vit_b16", 224, gpu) for gpu in predicted.PREDICTED_GPUS}
    for gpu in predicted.PREDICTED_GPUS:  # the default is now the explicit backend, priced as such
        assert after["vit_b16", 224, gpu] == baseline["vit_b16_explicit", 224, gpu]


def test_an_extra_copy_per_mixer_block_is_flagged(baseline, small):
    small.setattr(mixer.MixerBlock, "forward", _forward_with_copy)
    after = _tracks(small)
    assert _flagged(baseline, after) == {("mixer_b16", 224, gpu) for gpu in predicted.PREDICTED_GPUS}
    for gpu in predicted.PREDICTED_GPUS:  # a copy of 32 x 196 x 768 bfloat16 per block: small, but there
        assert 1 < after["mixer_b16", 224, gpu] / baseline["mixer_b16", 224, gpu] < 1.2


def test_a_comment_only_change_is_not_flagged(baseline, small):
    small.setattr(mixer.MixerBlock, "forward", _commented(mixer.MixerBlock.forward))
    after = _tracks(small)
    assert _flagged(baseline, after) == set()
    assert after == baseline  # deterministic: the very same numbers
