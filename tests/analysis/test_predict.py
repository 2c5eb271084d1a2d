"""The step-time model (bench.analysis.predict) against closed forms, the device table against the vendors'
per-SM rates, and the device file's errors. Seconds: synthetic kernels, and a few small cases on meta."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from bench import schema
from bench.analysis import predict
from bench.measure.cost import CostCounter
from bench.schema import ClassCost, Cost, Device, DeviceClass

# A made-up device: 4 SMs, 1 PFLOP/s at every dtype, 1 TB/s.
DEVICE = Device(
    name="toy",
    device_class="toy",
    flops={d: 1e15 for d in schema.PEAK_DTYPES},
    bandwidth=1e12,
    sms=4,
    boost_clock_hz=1e9,
    l2_bytes=0,
    memory_bytes=2**34,
    sources={n: "test" for n in schema.DEVICE_NUMBERS},
)
EXACT = DeviceClass(
    matmul_efficiency=1.0, conv_efficiency=1.0, attention_efficiency=1.0, bandwidth_efficiency=1.0, launch_s=0.0
)


def gemm(m: int, n: int, k: int, calls: int = 1, nbytes: int = 0) -> schema.ShapedKernel:
    return ("dense", "aten::mm", "float16", 2 * m * n * k, nbytes, calls, (1, m, n, k), False)


def cost_of(*kernels: schema.ShapedKernel, batch: int = 1) -> Cost:
    return Cost(
        model="toy",
        img_size=1,
        patch_size=None,
        tokens=None,
        batch=batch,
        dtype="float16",
        mode="infer",
        device="cuda",
        attention=None,
        bytes_moved=0,
        peak_activation_bytes=0,
        ops=len(kernels),
        flops=0,
        peak_step_bytes=0,
        by_class={"dense": ClassCost(0, 0, 0)},
        shaped=kernels,
        weight_bytes=0,
        input_bytes=0,
    )


def test_a_matmul_whose_tiles_fill_the_sms_takes_one_wave():
    tm, tn = predict.TILE
    k = 4096
    one_tile_s = 2 * tm * tn * k / (DEVICE.flops["float16"] / DEVICE.sms)  # one SM's share of the peak
    filled = gemm(2 * tm, 2 * tn, k)  # 4 tiles on 4 SMs
    assert predict.kernel_seconds(filled, DEVICE, EXACT) == pytest.approx(one_tile_s, rel=1e-12)


def test_one_tile_more_than_the_sms_takes_two_waves():
    tm, tn = predict.TILE
    k = 4096
    one_tile_s = 2 * tm * tn * k / (DEVICE.flops["float16"] / DEVICE.sms)
    five = gemm(5 * tm, tn, k)  # 5 tiles on 4 SMs: 2 waves, the second with one tile
    assert predict.kernel_seconds(five, DEVICE, EXACT) == pytest.approx(2 * one_tile_s, rel=1e-12)
    # a partial tile is a whole tile: one row more than 4 tiles costs a second wave too
    assert predict.kernel_seconds(gemm(4 * tm + 1, tn, k), DEVICE, EXACT) == pytest.approx(2 * one_tile_s, rel=1e-12)


def test_a_step_of_tiny_kernels_costs_the_launch_times_the_kernels():
    launch = dataclasses.replace(EXACT, launch_s=7e-6)
    tiny = cost_of(gemm(8, 8, 8, calls=30), ("norm_elementwise", "aten::add", "float16", 64, 256, 12, (), False))
    p = predict.predict(tiny, DEVICE, launch)
    assert p.step_s == pytest.approx(42 * 7e-6, rel=1e-12)
    assert p.class_share == pytest.approx({"dense": 30 / 42, "norm_elementwise": 12 / 42})
    assert p.images_per_s == pytest.approx(1 / (42 * 7e-6))


def test_memory_bound_operators_run_at_the_calibrated_fraction_of_bandwidth():
    half = dataclasses.replace(EXACT, bandwidth_efficiency=0.5)
    add = ("norm_elementwise", "aten::add", "float16", 10**6, 3 * 10**9, 1, (), False)
    assert predict.kernel_seconds(add, DEVICE, half) == pytest.approx(3e9 / (0.5 * 1e12))


def test_the_counter_records_each_matmul_shape():
    a, b = torch.empty(300, 70, device="meta"), torch.empty(70, 50, device="meta")
    x, w = torch.empty(6, 300, 70, device="meta"), torch.empty(6, 70, 50, device="meta")
    image, kernel = torch.empty(2, 8, 10, 10, device="meta"), torch.empty(16, 4, 3, 3, device="meta")
    with CostCounter() as counter:
        torch.mm(a, b)
        torch.bmm(x, w)
        torch.nn.functional.conv2d(image, kernel, padding=1, groups=2)
    shapes = {(op, g) for (_c, op, _d, _f, _b, g, _x) in counter.shaped}
    assert shapes == {
        ("aten::mm", (1, 300, 50, 70)),
        ("aten::bmm", (6, 300, 50, 70)),
        ("aten::convolution", (2, 2 * 10 * 10, 8, 4 * 3 * 3)),  # per group: M = images x pixels, N, K
    }


@pytest.fixture(scope="module")
def vit_costs():
    """ViT-B/16 at 224 px, batch 2, bf16 autocast, fused and explicit attention, counted as CUDA runs them."""
    case = schema.Case("vit_b16", 224, batch=2, device="cuda", dtype="bfloat16")
    return {b: predict.counted(case.replace(overrides={"attn_backend": b})) for b in ("fused", "explicit")}


def test_fused_attention_moves_q_k_v_and_o_only_explicit_moves_the_s_by_s_scores(vit_costs):
    b, h, s, d = 2, 12, 197, 64
    (flash,) = [k for k in vit_costs["fused"].shaped if k[1] == "aten::_scaled_dot_product_flash_attention"]
    assert flash[6] == (b * h, s, s, d)
    qkvo = 4 * b * h * s * d * 2 + b * h * s * 4  # q, k, v read and o written (bf16), log-sum-exp (fp32)
    assert 0 <= flash[4] - qkvo <= 32  # and the kernel's scalars (its RNG seed and offset), nothing S x S
    explicit = sum(k[4] * k[5] for k in vit_costs["explicit"].shaped if k[0] == "attention")
    assert explicit - flash[4] * flash[5] > 12 * b * h * s * s * 2  # the S x S scores, written and read again
    on = predict.load_devices()["h100-sxm"]
    fused_s, explicit_s = (predict.predict(vit_costs[k], on).class_share["attention"] for k in ("fused", "explicit"))
    assert explicit_s > fused_s


def test_the_shipped_table_is_complete_and_agrees_with_the_per_sm_rates():
    """Every device's float32 peak is SMs x FP32 lanes per SM x 2 x boost clock (the whitepapers' per-SM rates:
    64 lanes on GA100, 128 on GA102, AD10x, GH100 and GB202), within the vendors' rounding (1%)."""
    lanes = {"a100-80gb": 64}
    devices = predict.load_devices()
    assert {"h100-sxm", "h200", "a100-80gb", "l4", "l40s", "rtx-3090", "rtx-4090", "rtx-5090"} <= set(devices)
    assert "rtx-pro-6000-max-q" in devices
    for name, d in devices.items():
        expected = d.sms * lanes.get(name, 128) * 2 * d.boost_clock_hz
        assert d.flops["float32"] == pytest.approx(expected, rel=0.01), name
        assert d.flops["bfloat16"] >= d.flops["tf32"] >= d.flops["float32"] / 1.01, name
    table = predict.builtin_table()
    assert {d.device_class for d in devices.values()} <= set(table.classes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"format": 1, "devices": {"x": {"name": "x"}}}', "lacks"),
        ('{"format": 2, "devices": {}}', "format 2"),
    ],
)
def test_a_bad_device_file_is_a_one_line_error_naming_it(tmp_path, content, message):
    path = tmp_path / "mine.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as caught:
        predict.load_devices(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_device_without_a_source_or_of_an_unknown_class_is_refused(tmp_path):
    entry = json.loads(json.dumps(schema.encode(DEVICE)))
    entry["device_class"] = "gddr"
    unsourced = {**entry, "sources": {**entry["sources"], "bandwidth": " "}}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"format": 1, "devices": {"mine": unsourced}}))
    with pytest.raises(ValueError, match="no source for bandwidth"):
        predict.load_devices(path)
    path.write_text(json.dumps({"format": 1, "devices": {"mine": {**entry, "device_class": "nope"}}}))
    with pytest.raises(ValueError, match="unknown device class 'nope'"):
        predict.load_devices(path)
    path.write_text(json.dumps({"format": 1, "devices": {"mine": entry}}))
    assert predict.load_devices(path)["mine"].sms == 4


def test_peak_memory_predicts_the_h200_out_of_memory_case(vit_costs):
    """results/h200-oom: ViT-B/16 explicit at 768 px, batch 4096 ran out of the H200's memory; at 224 px it ran."""
    h200 = predict.load_devices()["h200"]
    big, small = (
        predict.predict_case(
            schema.Case(
                "vit_b16", s, batch=4096, device="cuda", dtype="bfloat16", overrides={"attn_backend": "explicit"}
            ),
            "h200",
        )
        for s in (768, 224)
    )
    assert not big.fits_in_memory and small.fits_in_memory
    assert big.peak_bytes > h200.memory_bytes > small.peak_bytes
    assert math.isclose(small.step_ms, small.step_s * 1e3)
