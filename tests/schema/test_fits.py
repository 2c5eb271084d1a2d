"""fits.json through bench.schema: FitRecord, read_fits, dumps_fits.

The independent reference is each fits.json of results/ parsed as plain JSON (json.load),
as the report of its day wrote it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from bench import schema
from helpers import ROOT

FITS = sorted((ROOT / "results").glob("*/fits.json"))
ADDED_SINCE = {"machine", "machine_name", "threads"}  # fields added after some of these files were written


def test_there_are_fits_files_with_every_optional_part():
    objects = [o for path in FITS for o in json.loads(path.read_text())]
    assert any("attribution" in o for o in objects) and any("measured_as" not in o for o in objects)
    assert any(o.get("measured_as") is None and "measured_as" in o for o in objects)


@pytest.mark.parametrize("path", FITS, ids=[p.parent.name for p in FITS])
def test_every_fits_file_of_results_reads_and_writes_back_the_same_keys_and_values(path):
    plain = json.loads(path.read_text())
    again = json.loads(schema.dumps_fits(schema.read_fits(path)))
    assert len(again) == len(plain)
    for old, new in zip(plain, again):
        assert {k: v for k, v in new.items() if k in old} == old
        assert list(old) == [k for k in new if k in old]  # the same order too
        assert set(new) - set(old) <= ADDED_SINCE and all(new[k] is None for k in set(new) - set(old))


def _fit(**changes) -> schema.FitRecord:
    (first,) = [f for f in schema.read_fits(ROOT / "results" / "cpu-quick-v2" / "fits.json") if f.attribution][:1]
    return dataclasses.replace(first, **changes)


def test_optional_parts_are_left_out_at_their_default_and_null_is_written():
    fit = _fit()
    assert fit.attribution is not None and fit.measured_as is None
    assert "attribution" in schema.encode(fit) and schema.encode(fit)["measured_as"] is None
    exact = schema.encode(dataclasses.replace(fit, attribution=None, measured_as=""))
    assert "attribution" not in exact and "measured_as" not in exact
    assert schema.decode_object(schema.FitRecord, exact) == dataclasses.replace(fit, attribution=None, measured_as="")


def test_a_number_that_is_not_finite_is_written_as_null_in_fits_only():
    fit = _fit(quadratic_share=math.nan, share_ci=(-math.inf, 1.0))
    (data,) = json.loads(schema.dumps_fits([fit]))
    assert data["quadratic_share"] is None and data["share_ci"] == [None, 1.0]
    with pytest.raises(ValueError, match="not JSON"):
        schema.encode(fit)  # the records' codec stays strict


@pytest.mark.parametrize(
    "change, message",
    [
        ({"verdict": "maybe"}, r"\[0\]\.verdict: 'maybe' is not one of linear"),
        ({"quadratic_share": "0.5"}, r"\[0\]\.quadratic_share: expected a number, got '0.5'"),
        ({"curve": {"a": 1.0}}, r"\[0\]\.curve.*lacks"),
        ({"surprise": 1}, r"\[0\]: unknown field\(s\) 'surprise'"),
        ({"x": [True]}, r"\[0\]\.x\[0\]: expected an integer"),
    ],
)
def test_read_fits_refuses_a_bad_object_with_one_line_naming_the_field(tmp_path, change, message):
    data = json.loads(schema.dumps_fits([_fit()]))
    data[0].update(change)
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as err:
        schema.read_fits(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("text", ["{}", "[1", "[NaN]", ""])
def test_read_fits_refuses_what_is_not_an_array_of_fits(tmp_path, text):
    path = tmp_path / "fits.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        schema.read_fits(path)


def test_the_reference_lists_the_fits_types_apart_from_the_records():
    table = schema.describe(schema.FITS_FILENAME)
    assert list(table) == ["FitRecord", "FitCurve", "FitAttribution"]
    rows = {name: kind for name, kind, _ in table["FitRecord"]}
    assert rows["attribution"] == "FitAttribution | null (may be absent)" and rows["curve"] == "FitCurve"
    assert "Record" in schema.describe(schema.RESULTS_FILENAME) and "FitRecord" not in schema.describe("results.jsonl")
