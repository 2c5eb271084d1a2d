"""bench.schema: the one codec, the one upgrade path from version 1, the one validating reader.

The independent reference for the upgrade is the version-1 lines as they were recorded
(tests/data/v1, copied from results/ before the rewrite) and the case keys those files
were written with (tests/data/v1/keys.json: each v1 line's case as JSON with sorted keys).
"""

from __future__ import annotations

import json
import math

import pytest

from bench import schema
from bench.schema import Case, Record
from helpers import ROOT

V1 = ROOT / "tests" / "data" / "v1"
RESULTS = ROOT / "results"

# fixture -> (the file of results/ it was copied from, the 1-based line numbers it holds)
ORIGINS = {
    "h200-oom.jsonl": ("h200-oom/results.jsonl", [1, 2]),
    "h200-max-batch.jsonl": ("h200-max-batch/results.jsonl", [1]),
    "cpu-quick-v2.jsonl": ("cpu-quick-v2/results.jsonl", [1, 2, 3]),
    "cpu-quick.jsonl": ("cpu-quick/results.jsonl", [1, 2]),
    "cpu-and-h200.jsonl": ("cpu-and-h200/results.jsonl", [1, 2]),
    "h200-paper-train.jsonl": ("h200-paper-train/results.jsonl", [1, 2, 12]),
    "peers-h200-float32-b8.jsonl": ("h200-peers/peers-float32-b8.jsonl", [1, 2, 3]),
    "peers-cpu.jsonl": ("cpu-peers/peers.jsonl", [1, 2, 3]),
}


def leaves(value, path=()):
    """(path, value) of every scalar in a JSON value; list items by index."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, path + (i,))
    else:
        yield path, value


def at(value, path):
    for p in path:
        value = value[p]
    return value


def v2_path(path: tuple) -> tuple | None:
    """Where a version-1 value lives in version 2 (the upgrade's documented moves); None: derived, dropped."""
    head, rest = path[0], path[1:]
    if head == "flops":
        return ("counts",) + rest
    if head in ("tokens", "params", "macs"):
        return ("counts", head)
    if head == "rounds":
        return ("time", "rounds_s") + rest
    if head == "attention_kernel":
        return ("profile", "attention_kernel")
    if path == ("time", "images_per_s"):
        return None
    return path


def fixture_pairs():
    for name, (origin, lines) in ORIGINS.items():
        old = [json.loads(line) for line in (V1 / name).read_text().splitlines() if line.strip()]
        new = [json.loads(line) for line in (RESULTS / origin).read_text().splitlines() if line.strip()]
        assert len(old) == len(lines)
        for line, v1 in zip(lines, old):
            yield name, v1, new[line - 1]


def test_every_v1_number_is_in_the_rewritten_v2_line():
    checked = 0
    for name, v1, v2 in fixture_pairs():
        assert v2["schema"] == 2 and v1["schema"] == 1
        for path, value in leaves(v1):
            if path == ("schema",):
                continue
            target = v2_path(path)
            if target is None:  # images_per_s: derived from batch / median_s
                assert value == pytest.approx(v1["time"]["batch"] / v1["time"]["median_s"], rel=1e-12)
                continue
            if path == ("case", "compile"):
                assert at(v2, target) == ("default" if value else "none"), name
                continue
            assert at(v2, target) == value and type(at(v2, target)) is type(value), (name, path)
            checked += 1
    assert checked > 1000


def test_no_v2_number_comes_from_nowhere():
    """Every number of a rewritten line is a v1 number (new parts are null or empty, nothing invented)."""
    for name, v1, v2 in fixture_pairs():
        old = {v2_path(p): v for p, v in leaves(v1) if v2_path(p) is not None}
        for path, value in leaves(v2):
            if path in (("schema",), ("case", "compile")) or value is None:
                continue
            if path == ("case", "threads"):
                continue
            assert path in old and old[path] == value, (name, path, value)


def test_v1_and_v2_lines_decode_to_the_same_record():
    for name, v1, v2 in fixture_pairs():
        cls = schema.PeerRecord if name.startswith("peers") else Record
        assert schema.decode_line(cls, v1) == schema.decode_line(cls, v2), name


def test_keys_of_every_results_folder_are_those_version_1_wrote():
    keys = json.loads((V1 / "keys.json").read_text())  # every folder results/ held in version 1
    assert len(keys) >= 8 and set(keys) <= {p.parent.name for p in RESULTS.glob("*/results.jsonl")}
    for folder, expected in keys.items():
        records, problems = schema.read_results(RESULTS / folder / "results.jsonl")
        assert problems == []
        assert [r.key for r in records] == expected, folder


def test_every_results_file_is_version_2_and_rewrites_to_itself():
    files = list(RESULTS.glob("**/*.jsonl"))
    assert len(files) >= 10
    for path in files:
        cls = schema.PeerRecord if path.name.startswith("peers") else Record
        records, problems = schema.read_jsonl(path, cls)
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert problems == [] and len(records) == len(lines)
        assert all(json.loads(line)["schema"] == 2 for line in lines)
        assert [schema.dumps(r) for r in records] == lines, path


def test_compile_upgrades_and_keys():
    v1 = json.loads((V1 / "cpu-quick.jsonl").read_text().splitlines()[0])
    old_key = json.dumps(v1["case"], sort_keys=True, separators=(",", ":"))
    v1["case"]["compile"] = True
    compiled = schema.decode_line(Record, v1)
    assert compiled.case.compile == "default"
    assert compiled.key == json.dumps(v1["case"], sort_keys=True, separators=(",", ":"))
    assert compiled.key != old_key
    assert compiled.case.replace(compile="max-autotune").key.count('"compile":"max-autotune"') == 1


def test_lines_older_than_the_counts_part_get_counts_from_the_top_level():
    v1 = json.loads((V1 / "cpu-quick.jsonl").read_text().splitlines()[0])
    flops = v1.pop("flops")
    r = schema.decode_line(Record, v1)
    assert (r.counts.macs, r.counts.params, r.counts.tokens) == (flops["macs"], flops["params"], flops["tokens"])
    assert r.counts.activations == 0


def good_line() -> dict:
    return json.loads((RESULTS / "cpu-quick-v2" / "results.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["case"].update(batch=0), "case.batch: 0 is below 1"),
        (lambda d: d["case"].update(batch=True), "case.batch"),
        (lambda d: d["case"].update(img_size="64"), "case.img_size: expected an integer, got '64'"),
        (lambda d: d["time"].update(median_s="fast"), "time.median_s: expected a number, got 'fast'"),
        (lambda d: d["time"].update(runs=True), "time.runs: expected an integer, got True"),
        (lambda d: d.update(mfu=False), "mfu: expected a number, got False"),
        (lambda d: d.update(env="linux"), "env: expected an object, got 'linux'"),
        (lambda d: d.update(env=[1]), "env: expected an object, got an array"),
        (lambda d: d["counts"].update(macs=10**19), "counts.macs: integer out of range"),
        (lambda d: d.update(status="finished"), "status: 'finished' is not one of"),
        (lambda d: d["time"].update(times_s={"a": 1}), "time.times_s: expected an array"),
        (lambda d: d["profile"]["cpu_s_rounds"].pop("dense"), "profile: cpu_s_rounds names other classes"),
        (lambda d: d["profile"].update(steps=2), "profile: cpu_s_rounds does not hold one value per profiled step"),
        (lambda d: d["profile"]["cpu_s"].update(dense=-1.0), "profile: cpu_s holds a negative time"),
        (lambda d: d["cost"]["kernels"][0].pop(), "cost.kernels[0]: expected an array of 5"),
        (lambda d: d["machine"].update(gpu=3), "machine.gpu: expected an object, got 3"),
        (lambda d: d["case"]["overrides"].update(depth={"a": 1}), "case.overrides.depth"),
        (lambda d: d.update(schema="2"), "unknown schema '2'"),
        (lambda d: d.update(schema=10**40), "not valid JSON"),  # 41 digits: refused by the parser's bound
        (lambda d: d.update(energy={"joules_per_image": 1.0}), "energy: lacks mean_watts"),
    ],
)
def test_bad_values_are_one_problem_each(tmp_path, change, message):
    data = good_line()
    change(data)
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(data) + "\n" + json.dumps(good_line()) + "\n")
    records, problems = schema.read_results(path)
    assert len(records) == 1
    assert len(problems) == 1 and problems[0].line == 1 and message in problems[0].message, problems
    assert str(problems[0]).startswith(f"{path} line 1: ")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"schema": 2, "case": {}, "status": "ok", "x": ' + "1" * 5000 + "}", "an integer of 5000 digits"),
        ('{"case": {}, "status": "ok", "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than 16"),
        ('{"case": {}, "status": "ok", "x": NaN}', "NaN is not JSON"),
        ('{"case": {}, "status": "ok", "x": -Infinity}', "-Infinity is not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"status": "ok"}', "not a result record"),
        ("\xff\xfe", "not valid JSON"),
    ],
)
def test_hostile_lines_never_raise(tmp_path, text, message):
    path = tmp_path / "results.jsonl"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape") if text != "\xff\xfe" else b"\xff\xfe\n")
    records, problems = schema.read_results(path)
    assert records == [] and len(problems) == 1 and message in problems[0].message


def test_unknown_top_level_keys_are_kept_and_written_back():
    data = dict(good_line(), note={"by": "a tool", "n": [1, 2]})
    r = schema.decode_line(Record, data)
    assert r.extra == {"note": {"by": "a tool", "n": [1, 2]}}
    assert json.loads(schema.dumps(r)) == data


def test_encoding_is_strict_json():
    r = schema.decode_line(Record, good_line())
    r.mfu = math.nan
    with pytest.raises(ValueError):
        schema.dumps(r)


def test_only_opening_raises_and_a_fifo_is_never_opened(tmp_path):
    import os

    from bench.files import UnsafeFile

    with pytest.raises(FileNotFoundError):
        schema.read_results(tmp_path / "missing.jsonl")
    os.mkfifo(tmp_path / "results.jsonl")
    with pytest.raises(UnsafeFile):
        schema.read_results(tmp_path / "results.jsonl")  # returns at once: a FIFO would block a reader


def test_describe_lists_every_stored_field_with_a_json_type_and_a_doc():
    table = schema.describe()
    assert set(table) == {t.__name__ for t in schema.TYPES}
    record = dict((name, (kind, doc)) for name, kind, doc in table["Record"])
    assert record["schema"][0] == "integer"
    assert record["counts"][0] == "Counts | null"
    assert record["energy"][0] == "Energy | null" and record["compile_time"][0] == "CompileTime | null"
    assert "extra" not in record and "label" not in dict((n, k) for n, k, _ in table["Case"])
    assert dict((n, k) for n, k, _ in table["Case"])["batch"] == 'integer | "max"'
    assert (
        dict((n, k) for n, k, _ in table["Cost"])["kernels"] == "array of [string, string, integer, integer, integer]"
    )
    assert all(doc for rows in table.values() for _, _, doc in rows)


def test_schema_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, bench.schema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_case_round_trips_through_the_codec():
    case = Case(
        "vit_s16", 224, 16, "max", "cuda", "bfloat16", "train", {"attn_backend": "explicit"}, True, "max-autotune"
    )
    assert schema.decode_object(Case, schema.encode(case)) == case
    assert schema.decode_object(Case, json.loads(json.dumps(schema.encode(case)))).key == case.key
