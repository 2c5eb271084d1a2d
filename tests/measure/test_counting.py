"""bench.measure.counting against independent references: published figures, fvcore, FlopCounterMode, closed forms."""

from __future__ import annotations

import logging

import pytest
import torch

import architectures
from bench.measure import formulas
from bench.measure.counting import MacCounter, _run_counted, build, count, flop_counter_macs, fvcore_count
from bench.schema import Case, encode

# timm 1.0.31 + fvcore with attention counted, LayerNorm counted, at 224 px (DESIGN.md).
PUBLISHED_GMACS = {"mixer_b16": 12.62, "vit_b16": 17.58, "resnet50": 4.11}
PUBLISHED_PARAMS = {"mixer_b16": 59_880_472, "vit_b16": 86_567_656, "resnet50": 25_557_032}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_published_reference_figures(name):
    record = count(Case(name, 224))
    assert round(record.macs / 1e9, 2) == PUBLISHED_GMACS[name]
    assert record.params == PUBLISHED_PARAMS[name]
    assert record.device == "meta"


def test_timm_peers_match_the_published_figures():
    vit = count(Case("timm:vit_base_patch16_224", 224))
    assert round(vit.macs / 1e9, 2) == 17.58
    assert (vit.tokens, vit.patch_size) == (197, 16)
    resnet = count(Case("timm:resnet50", 224))
    assert round(resnet.macs / 1e9, 2) == 4.11
    assert (resnet.tokens, resnet.patch_size) == (None, None)


def test_vit_b16_attention_is_counted():
    # Without attention fvcore reports 16.87 G (DESIGN.md): the difference is 12 * 2 * 197^2 * 768.
    record = count(Case("vit_b16", 224))
    attention = 12 * 2 * 197**2 * 768
    assert round((record.macs - attention) / 1e9, 2) == 16.87


@pytest.mark.parametrize("name", architectures.list_models())
def test_closed_form_and_flop_counter_mode_agree_for_every_preset(name):
    """Matmul/conv/attention MACs: this counter = closed form at 224 and 448 px = FlopCounterMode / 2 at 448 px."""
    for size in (224, 448):
        record = count(Case(name, size))
        closed = formulas.closed_form(build(Case(name, size)).config)
        assert record.matmul_macs == pytest.approx(closed.matmul, rel=0.01)
        assert record.matmul_macs == closed.matmul  # in fact exact
        assert record.macs == closed.total  # LayerNorm / BatchNorm as fvcore counts them
    assert flop_counter_macs(Case(name, 448)) == pytest.approx(record.matmul_macs, rel=0.01)


@pytest.fixture(scope="module")
def fvcore_vit_ti16_384():
    return fvcore_count(Case("vit_ti16", 384))  # S = 577: attention is a third of the matmul MACs


@pytest.mark.parametrize(
    "name, size, kwargs",
    [
        ("vit_ti16", 384, {}),
        ("vit_ti16", 96, {"patch_size": 8, "class_token": False, "global_pool": "avg", "attn_backend": "explicit"}),
        ("mixer_s16", 128, {"scale_tokens_mlp": True}),
        ("resnet18", 96, {}),
        ("resnet50", 64, {}),
    ],
)
def test_fvcore_on_real_tensors_agrees(name, size, kwargs, fvcore_vit_ti16_384):
    config = {k: v for k, v in kwargs.items() if k != "patch_size"}
    case = Case(name, size, kwargs.get("patch_size"), overrides=config)
    ours = count(case)
    theirs = fvcore_vit_ti16_384 if (name, size, kwargs) == ("vit_ti16", 384, {}) else fvcore_count(case)
    assert theirs.matmul_macs == ours.matmul_macs
    assert theirs.activations == ours.activations
    if name.startswith("resnet"):
        # fvcore counts the global average pool (adaptive_avg_pool2d) as one per input element;
        # at the dispatcher it is a mean, which we leave uncounted (as fvcore does for mean).
        last = build(case).layer4[-1]
        channels = last.conv3.out_channels if hasattr(last, "conv3") else last.conv2.out_channels
        side = -(-size // 32)
        assert theirs.macs - ours.macs == channels * side * side
    else:
        assert theirs.macs == ours.macs
    assert formulas.closed_form(build(case).config).total == ours.macs


def test_fvcore_sdpa_handle_counts_the_quadratic_term(fvcore_vit_ti16_384):
    theirs = fvcore_vit_ti16_384
    s, d, blocks = 577, 192, 12
    assert theirs.by_operator["scaled_dot_product_attention"] == blocks * 2 * s * s * d
    assert "aten::scaled_dot_product_attention" not in theirs.uncounted


def test_skipped_operators_are_reported_not_warned(caplog):
    with caplog.at_level(logging.WARNING):
        theirs = fvcore_count(Case("vit_ti16", 64))
    assert not [r for r in caplog.records if r.name.startswith("fvcore")]
    assert {"aten::add", "aten::gelu"} <= set(theirs.uncounted)
    ours = count(Case("vit_ti16", 64))
    assert ours.uncounted["aten::gelu"] == 12  # one per block
    assert ours.uncounted["aten::add"] == 2 * 12 + 1  # two residuals per block + the position embedding
    assert "aten::view" not in ours.uncounted  # data movement is not arithmetic


def test_fused_and_explicit_attention_count_the_same():
    fused = count(Case("vit_s16", 320))
    explicit = count(Case("vit_s16", 320, overrides={"attn_backend": "explicit"}))
    assert (fused.macs, fused.activations) == (explicit.macs, explicit.activations)


def test_fused_attention_kernel_rule():
    """A fused SDPA kernel (as on CPU/CUDA, not decomposed) is counted as q k^T plus attn v."""
    q = torch.zeros(2, 3, 7, 4)
    k = torch.zeros(2, 3, 5, 4)
    v = torch.zeros(2, 3, 5, 4)
    counter = MacCounter()
    with counter:
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
    assert counter.matmul_macs == {"aten::_scaled_dot_product_flash_attention_for_cpu": 2 * 3 * 7 * 5 * (4 + 4)}
    assert counter.activations == 2 * 3 * 7 * 5 + 2 * 3 * 7 * 4


@pytest.mark.parametrize("name", ["mixer_s16", "vit_ti16", "resnet18", "resnet50", "timm:mixer_s16_224"])
def test_meta_shortcuts_give_the_same_counts(name):
    net = build(Case(name, 224))
    fast = _run_counted(net, 224, "meta", shortcuts=True)
    slow = _run_counted(net, 224, "meta", shortcuts=False)
    assert fast.matmul_macs == slow.matmul_macs
    assert fast.norm_macs == slow.norm_macs
    assert (fast.activations, fast.uncounted) == (slow.activations, slow.uncounted)


def test_meta_shortcut_outputs_match_meta_kernels():
    from bench.measure.counting import _meta_shortcut

    aten = torch.ops.aten
    m = lambda *shape: torch.empty(*shape, device="meta")  # noqa: E731
    cases = [
        (aten.native_layer_norm.default, (m(2, 5, 8), [8], m(8), m(8), 1e-6)),
        (aten.native_batch_norm.default, (m(2, 4, 6, 6), m(4), m(4), m(4), m(4), False, 0.1, 1e-5)),
        (
            aten.native_batch_norm.default,
            (m(2, 4, 6, 6).to(memory_format=torch.channels_last), m(4), m(4), m(4), m(4), False, 0.1, 1e-5),
        ),
        (aten.addmm.default, (m(5), m(3, 4), m(5, 4).t())),
        (aten.gelu.default, (m(3, 4).t(),)),
        (aten._safe_softmax.default, (m(3, 4).t(), -1)),
        (aten.mul.Scalar, (m(3, 4).t(), 0.5)),
        (aten.add.Tensor, (m(3, 4), m(3, 4))),
        (aten.add.Tensor, (m(2, 4, 3).transpose(1, 2), m(2, 4, 3).transpose(1, 2))),
        (aten.add.Tensor, (m(2, 4, 3).transpose(1, 2), m(2, 3, 4))),
        (aten.add.Tensor, (m(2, 3, 4), m(2, 4, 3).transpose(1, 2))),
        (aten.add.Tensor, (m(2, 3, 4), m(4))),
        (aten.add.Tensor, (m(2, 3, 4), m(3, 4))),
        (aten.add.Tensor, (m(2, 3, 4), m(1, 3, 4))),  # a position embedding
        (aten.add.Tensor, (m(2, 3, 4).half(), m(1, 3, 4))),  # ... under autocast: float32
        (aten.add.Tensor, (m(2, 3, 4).half(), m(4).bfloat16())),
        (aten.add.Tensor, (m(2, 4, 3).transpose(1, 2).half(), m(2, 3, 4))),
        (aten.add.Tensor, (m(2, 3, 4).half(), m(2, 3, 4))),
        (aten.cat.default, ([m(2, 1, 4), m(2, 3, 4)], 1)),
        (aten.cat.default, ([m(2, 1, 4), m(2, 3, 4)], -2)),
        (aten.cat.default, ([m(2, 1, 4), m(2, 4, 3).transpose(1, 2)], 1)),
        (aten.cat.default, ([m(2, 1, 4), m(2, 3, 4).half()], 1)),  # autocast: a float32 token, float16 patches
        (aten.cat.default, ([m(2, 1, 4).bfloat16(), m(2, 3, 4).half()], 1)),
        (aten.mean.dim, (m(2, 3, 4, 4), [-1, -2], True)),
        (aten.mean.dim, (m(2, 3, 4), [1])),
        (aten.mean.dim, (m(2, 3, 4), [-1, 0])),
        (aten.native_layer_norm.default, (m(2, 8, 5).transpose(1, 2), [8], m(8), m(8), 1e-6)),
    ]
    for func, args in cases:
        expected = func(*args)
        got = _meta_shortcut(func, args, {})
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = got if isinstance(got, tuple) else (got,)
        assert [(t.shape, t.stride(), t.dtype) for t in got] == [(t.shape, t.stride(), t.dtype) for t in expected], func
    # a memory format to keep: the kernel runs
    assert (
        _meta_shortcut(aten.cat.default, ([m(2, 1, 4, 4), m(2, 3, 4, 4).to(memory_format=torch.channels_last)], 1), {})
        is None
    )


def test_record_fields():
    record = count(Case("vit_b16", 384))
    d = encode(record)
    for key in ("model", "img_size", "patch_size", "tokens", "params", "macs", "activations", "uncounted"):
        assert key in d
    assert (record.img_size, record.patch_size, record.tokens) == (384, 16, 577)
    assert record.params == PUBLISHED_PARAMS["vit_b16"] + (577 - 197) * 768  # only the position embedding grows


def test_bad_cases_raise_value_error():
    with pytest.raises(ValueError, match="unknown model"):
        count(Case("vit_b17", 224))
    with pytest.raises(ValueError, match="not divisible"):
        count(Case("vit_b16", 200))
    with pytest.raises(ValueError, match="takes no patch_size"):
        count(Case("resnet50", 224, 16))


def test_timm_peer_that_cannot_run_on_meta_is_counted_on_cpu(monkeypatch):
    import bench.measure.counting as counting_module

    real = counting_module._run_counted

    def meta_fails(net, img_size, device, shortcuts=True):
        if device == "meta":
            raise NotImplementedError("pretend this model has a data-dependent op")
        return real(net, img_size, device, shortcuts)

    expected = count(Case("timm:resnet18", 64))
    monkeypatch.setattr(counting_module, "_run_counted", meta_fails)
    record = count(Case("timm:resnet18", 64))
    assert record.device == "cpu"
    assert (record.macs, record.activations, record.params) == (expected.macs, expected.activations, expected.params)
    assert record.macs == formulas.closed_form(build(Case("resnet18", 64)).config).total
    with pytest.raises(NotImplementedError):  # reference models must run on meta: no fallback
        count(Case("resnet18", 64))


class _OddOps(torch.nn.Module):
    """Operators our zoo does not use but timm peers may: fvcore's other counting rules."""

    def __init__(self, train_bn: bool):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(4, 6, 2, stride=2)
        self.gn = torch.nn.GroupNorm(2, 6)
        self.bn = torch.nn.BatchNorm2d(6).train(train_bn)
        self.inorm = torch.nn.InstanceNorm2d(6, affine=True)
        self.conv = torch.nn.Conv2d(6, 6, 3, padding=1, groups=3)

    def forward(self, x):
        x = self.gn(self.up(x))
        x = self.inorm(self.bn(x))
        x = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")
        x = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        x = torch.nn.functional.adaptive_avg_pool2d(self.conv(x), 3)
        return torch.einsum("bchw,bdhw->bcd", x, x)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("train_bn", [False, True])
def test_other_fvcore_rules_match_fvcore(train_bn):
    from fvcore.nn import FlopCountAnalysis

    net = _OddOps(train_bn)
    x = torch.zeros(2, 4, 5, 5)
    theirs = FlopCountAnalysis(net, (x,))
    theirs.unsupported_ops_warnings(False)
    counter = MacCounter()
    with torch.no_grad(), counter:
        net(x)
    assert counter.total == theirs.total()
    assert set(counter.uncounted) <= {"aten::add_"}  # training BatchNorm's num_batches_tracked += 1


def test_meta_kernels_replay_fresh_outputs_only():
    from bench.measure.counting import MetaKernels

    aten = torch.ops.aten
    kernels = MetaKernels()
    x = torch.empty(3, 4, device="meta").t()
    first = kernels(aten.gelu.default, (x,), {})
    again = kernels(aten.gelu.default, (x,), {})  # replayed: same layout, a storage of its own
    assert (
        (again.shape, again.stride(), again.dtype)
        == (first.shape, first.stride(), first.dtype)
        == ((4, 3), (1, 4), torch.float32)
    )
    assert again.untyped_storage()._cdata != first.untyped_storage()._cdata
    stats = kernels(aten.native_layer_norm.default, (x, [3], None, None, 1e-5), {})
    assert [t.shape for t in kernels(aten.native_layer_norm.default, (x, [3], None, None, 1e-5), {})] == [
        t.shape for t in stats
    ]
    assert kernels(aten.gelu.default, (x.to(torch.bfloat16),), {}).dtype == torch.bfloat16  # dtype is in the key
    assert kernels(aten.mul.Tensor, (x, 2), {}).dtype == torch.float32
    ints = torch.empty(2, dtype=torch.int64, device="meta")
    assert kernels(aten.mul.Tensor, (ints, 2), {}).dtype == torch.int64
    assert kernels(aten.mul.Tensor, (ints, 2.0), {}).dtype == torch.float32  # an int and a float are different keys
    for func, args in [(aten.t.default, (x,)), (aten.relu_.default, (x,))]:  # a view and an in-place operator
        assert kernels(func, args, {}) is not None
        assert kernels(func, args, {}).untyped_storage()._cdata == x.untyped_storage()._cdata
    cpu = torch.zeros(2, 2)
    assert kernels(aten.gelu.default, (cpu,), {}).device.type == "cpu"
    assert len(kernels._layouts) == 6  # gelu (float32, bfloat16), layer norm, three products; nothing else


@pytest.mark.parametrize(
    "case",
    [
        Case("vit_ti16", 224, mode="train"),
        Case("vit_ti16", 224, dtype="bfloat16", device="cuda", overrides={"attn_backend": "explicit"}),
        Case("resnet18", 224, channels_last=True),
        Case("mixer_s32", 224, mode="train", dtype="float16", device="cuda"),
    ],
    ids=["vit-train", "vit-bf16-explicit", "resnet-channels-last", "mixer-train-fp16"],
)
def test_costs_are_the_same_without_replayed_kernels(monkeypatch, case):
    from bench.measure import counting
    from bench.measure.cost import cost

    monkeypatch.setattr(counting, "META_KERNELS", counting.MetaKernels())
    replayed = cost(case)
    assert counting.META_KERNELS._layouts  # the replay was used
    monkeypatch.setattr(counting, "META_KERNELS", lambda func, args, kwargs: func(*args, **kwargs))
    assert cost(case) == replayed


def test_a_counted_model_is_handed_over_to_the_next_build_of_the_case(monkeypatch):
    from bench.measure import counting
    from bench.measure.cost import cost

    monkeypatch.setattr(counting, "_SPARE", {})
    case = Case("vit_ti16", 224)
    counting.count(case)
    net = counting._SPARE[counting._build_key(case)]
    assert build(case) is net and not counting._SPARE  # taken over once
    assert build(case) is not net
    counting.count(case)
    handed_over = cost(case)
    assert not counting._SPARE
    assert cost(case) == handed_over  # built anew
    counting.count(Case("timm:mixer_s16_224", 224))  # timm models are never handed over
    assert not counting._SPARE


def test_a_convnet_costed_for_inference_is_handed_over_at_its_next_size(monkeypatch):
    from bench.measure import counting
    from bench.measure.cost import cost

    monkeypatch.setattr(counting, "_SPARE", {})
    small, large = Case("resnet18", 64), Case("resnet18", 96)
    counting.count(small)
    cost(small)  # an inference step only reads the model: it is left for the next size
    (net,) = counting._SPARE.values()
    reused_counts = counting.count(large)
    assert counting._SPARE[counting._build_key(large)] is net and net.config.img_size == 96
    reused_cost = cost(large)
    counting._SPARE.clear()
    assert reused_counts == counting.count(large)  # as counted on a model built at that size
    counting._SPARE.clear()
    assert reused_cost == cost(large)
    counting.count(small)
    cost(Case("resnet18", 64, mode="train"))  # a training step changes the model: it takes it and leaves nothing
    assert not counting._SPARE
