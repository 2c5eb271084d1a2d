"""The calibrated model checked on CPU cases its calibration never saw (results/cpu-predict-validation).

The measured cases are paper-size models (Mixer-B/16, ViT-B/16, ResNet-50 and two timm peers) at 224 px,
batch 1 and 8, one thread, float32; the CPU device is built from the quick and asv folders' measured roofs
(``roof_flops_per_s``, ``copy_bytes_per_s``), read here as plain JSON for the reference.
"""

from __future__ import annotations

import json
import statistics

import pytest

from bench.runs import predictions
from helpers import ROOT

VALIDATION = ROOT / "results" / "cpu-predict-validation"
CALIBRATION = (ROOT / "results" / "cpu-quick-v3", ROOT / "results" / "cpu-asv-measured-v2")


def _json(folder):
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def validation():
    return predictions.validate_cpu_folders(VALIDATION, CALIBRATION)


@pytest.mark.slow  # ten paper-size cases counted on meta
def test_every_measured_case_is_predicted_on_the_calibration_roofs(validation):
    ok = [r for r in _json(VALIDATION) if r["status"] == "ok"]
    measured = {(r["case"]["model"], r["case"]["batch"]): r["time"]["median_s"] for r in ok}
    seen = [r for folder in CALIBRATION for r in _json(folder)]
    cases = {json.dumps(r["case"], sort_keys=True) for r in ok}
    assert len(measured) >= 6 and not cases & {json.dumps(r["case"], sort_keys=True) for r in seen}
    assert validation.roof_flops_per_s == max(r["roof_flops_per_s"] for r in seen)
    assert validation.bandwidth == max(r["copy_bytes_per_s"] for r in seen)
    assert len(validation.rows) == len(measured)
    for row in validation.rows:
        assert row.measured_s == measured[row.record.case.model, row.record.case.batch]
        assert row.error == pytest.approx(row.predicted_s / row.measured_s - 1)
    assert validation.median_abs_error == statistics.median(
        abs(r.predicted_s / r.measured_s - 1) for r in validation.rows
    )
    table = predictions.validation_table(validation)
    assert f"over {len(measured)} cases: {validation.median_abs_error:.0%}" in table


def test_a_case_in_both_the_measured_and_the_calibration_folders_is_refused():
    with pytest.raises(ValueError, match="in both"):
        predictions.validate_cpu_folders(CALIBRATION[0], CALIBRATION)
