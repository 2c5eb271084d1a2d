"""`mixerbench flops` with the cost (--attention, --mode) and the cost part of a sweep record."""

from __future__ import annotations

import json

from bench.cli import main
from bench.measure.cost import cost
from bench.runs.records import Record
from bench.schema import Case


def test_flops_prices_each_backend_and_mode_and_fits_them(capsys):
    code = main(
        [
            "flops",
            "--models",
            "vit_s16,mixer_s16",
            "--resolutions",
            "224,448,672",
            "--attention",
            "fused,explicit",
            "--mode",
            "infer,train",
            "--format",
            "json",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    payload = json.loads(out)
    # ViT: 3 sizes x 2 backends x 2 modes; Mixer has no backend: 3 x 2.
    assert len(payload["records"]) == 12 + 6
    assert {r["attention"] for r in payload["records"] if r["model"] == "mixer_s16"} == {None}
    verdicts = {
        (f["model"], f["attention"], f["mode"], f["quantity"]): (f["verdict"], f["b"])
        for f in payload["fits"]
        if f["quantity"] != "macs"
    }
    h, f32 = 6, 4  # ViT-S: 6 heads; two S x S float32 matrices alive at the peak of an inference step
    assert verdicts["vit_s16", "explicit", "infer", "peak_activation_bytes"] == ("quadratic", 2 * h * f32)
    for key in (
        ("vit_s16", "fused", "infer"),
        ("vit_s16", "fused", "train"),
        ("mixer_s16", None, "infer"),
        ("mixer_s16", None, "train"),
    ):
        for quantity in ("bytes_moved", "peak_activation_bytes", "ops"):
            assert verdicts[key + (quantity,)] == ("linear", 0), (key, quantity)
    assert verdicts["vit_s16", "explicit", "train", "bytes_moved"][0] == "quadratic"
    macs = [f for f in payload["fits"] if f["quantity"] == "macs"]
    assert {f["model"]: f["verdict"] for f in macs} == {"vit_s16": "quadratic", "mixer_s16": "linear"}


def test_a_record_keeps_its_cost_and_copy_bandwidth():
    case = Case("mixer_s16", 96, batch=2)
    record = Record(case=case, status="error", label="mixer_s16", cost=cost(case), copy_bytes_per_s=1.5e10)
    again = Record.from_json(json.loads(json.dumps(record.to_json())))
    assert again.cost == record.cost and again.copy_bytes_per_s == 1.5e10
    assert again.cost.batch == 2 and again.extra == {}
