"""The report of a sweep at a cluster's scale: 2,600 records (400 series on 10 machines, tests/synth_records.py).

``data/report_scale/fits-2600.json.gz`` is the fits.json that ``python -m bench report`` wrote for the folder
``python tests/synth_records.py DIR 2600`` at commit e0326fa (main before the report streamed its records and
summarised its plots), gzipped. It guards the refactoring: the report must give the same fits, every key, string, integer and verdict exactly
and every float to a relative 1e-9 (a least-squares fit's last digits vary with the BLAS build and its threads).
Whether those verdicts are right is checked elsewhere, against independent references (test_report.py); here
the verdict counts per model are also checked against results/cpu-quick-v3/fits.json, whose records every
synthetic series copies.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter

import pytest
import synth_records

from bench import report
from bench.report import breakdown, verdicts
from helpers import ROOT

N = 2600
COPIES = N // 26  # the 26 records of results/cpu-quick-v3, each copy at another batch or machine
REFERENCE = ROOT / "tests" / "data" / "report_scale" / "fits-2600.json.gz"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale")
    synth_records.write(out, N)
    report.write_report(out)
    return out


def test_the_synthetic_folder_multiplies_series(folder):
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert len(lines) == N
    machines = {r["machine"]["machine_id"] for r in lines}
    assert len(machines) == COPIES // synth_records.BATCHES
    assert len({m[:6] for m in machines}) == len(machines)  # the report's short names stay apart
    assert {r["case"]["batch"] for r in lines} == set(range(1, synth_records.BATCHES + 1))
    assert synth_records.lines(30) == (folder / "results.jsonl").read_text().splitlines()[:30]  # deterministic


@pytest.mark.slow
def test_fits_json_is_what_the_report_gave_before_it_streamed(folder):
    reference = json.loads(gzip.decompress(REFERENCE.read_bytes()))
    assert _same(json.loads((folder / verdicts.FILENAME).read_text()), reference)


def _same(a, b) -> bool:
    """Equal JSON values, floats to a relative 1e-9."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.slow
def test_verdicts_by_model_count_the_source_verdicts(folder):
    source = json.loads((ROOT / "results" / "cpu-quick-v3" / "fits.json").read_text())
    expected = Counter((f["label"], f["quantity"], f["verdict"]) for f in source)
    text = (folder / "report.md").read_text()
    assert "## Verdicts by model" in text
    keys = {"MACs": "macs", "latency": "latency", "activation memory": "activation_memory"}
    found = Counter()
    for label, quantity, series, linear, quadratic, inconclusive, _ in re.findall(
        r"^\| (.+?) cpu float32 infer \| (MACs|latency|activation memory) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$",
        text,
        re.MULTILINE,
    ):
        assert int(series) == COPIES
        for verdict, n in (("linear", linear), ("quadratic", quadratic), ("inconclusive", inconclusive)):
            if int(n):
                found[(label, keys[quantity], verdict)] += int(n)
    assert found == Counter({k: n * COPIES for k, n in expected.items()})


@pytest.mark.slow
def test_plots_summarise_instead_of_enumerating(folder):
    from PIL import Image

    with Image.open(folder / breakdown.PLOT) as image:
        size = image.size
    # four models, one panel each in two columns of 6.5 x 4.2 inches at 110 dpi (not one per each of 400 series)
    assert size == (2 * 6.5 * 110, 2 * 4.2 * 110)
    text = (folder / "report.md").read_text()
    assert text.count("median of") == 0  # the legends are in the plots; the tables list every series
    assert (
        len(re.findall(r"^\| mixer C128 x2 p4 b\d+ cpu float32 infer on .+? \| latency \| S \|", text, re.M)) == COPIES
    )
