"""results.jsonl: append-and-flush writer, typed records validated by schema and status, broken lines by number."""

from __future__ import annotations

import json

import pytest

from bench.runs import records
from bench.runs.records import PeerRecord, Record
from bench.schema import Case, Counts, Memory, PairedTiming, PeerCase, Timing
from helpers import ROOT


def rec(model: str, size: int, status: str = "error", overrides=None) -> Record:
    case = Case(model, size, overrides=overrides if overrides is not None else {"b": 1, "a": 2})
    return Record(case=case, status=status, error=None if status == "ok" else "RuntimeError: x")


def ok(size: int = 64) -> Record:
    record = rec("m", size, "ok")
    record.counts = Counts("m", size, 8, 65, 10, 1000, 5, {}, 900)
    record.time = Timing(
        median_s=0.01,
        iqr_s=0.001,
        mean_s=0.01,
        runs=3,
        number_per_run=1,
        batch=1,
        warmup=1,
        times_s=(0.01, 0.011, 0.009),
    )
    record.memory = Memory("cpu_peak_rss", 10, 30, 20, 5)
    return record


def test_roundtrip_and_flush(tmp_path):
    path = tmp_path / "results.jsonl"
    with records.ResultsWriter(path) as w:
        w.append(rec("m", 64))
        # flushed at once: another reader sees the line before the writer is closed
        assert path.read_text().count("\n") == 1
        w.append(ok(96))
    found, problems = records.read_results(path)
    assert problems == []
    assert [r.case.img_size for r in found] == [64, 96]
    assert found[1] == ok(96).__class__.from_json(ok(96).to_json())
    assert found[1].time.times_s == (0.01, 0.011, 0.009) and found[1].tokens == 65


def test_broken_lines_reported_by_number_and_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    good = json.dumps(rec("m", 64).to_json())
    path.write_text(good + "\n{not json\n" + json.dumps([1, 2]) + "\n\n" + good.replace("64", "96") + "\n" + good[:20])
    before = path.read_bytes()
    found, problems = records.read_results(path)
    assert [r.case.img_size for r in found] == [64, 96]
    assert [p.line for p in problems] == [2, 3, 6]
    assert "not valid JSON" in problems[0].message and "line 2" in str(problems[0])
    assert "not a JSON object" in problems[1].message
    assert path.read_bytes() == before  # reading never rewrites

    # appending after a broken last line: the broken line stays, the new record gets its own line
    with records.ResultsWriter(path) as w:
        w.append(rec("m", 128))
    assert path.read_bytes().startswith(before)
    found, problems = records.read_results(path)
    assert [r.case.img_size for r in found] == [64, 96, 128]
    assert [p.line for p in problems] == [2, 3, 6]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("time"), "'ok' record without time"),
        (lambda d: d.pop("memory"), "'ok' record without memory"),
        (lambda d: d.update(status="done"), "status: 'done' is not one of ok, oom, error, killed"),
        (lambda d: d.update(schema=99), "schema 99: written by a newer mixerbench"),
        (lambda d: d["case"].pop("device"), "case: lacks device"),
        (lambda d: d["case"].update(colour="red"), "case: unknown field(s) 'colour'"),
        (lambda d: d["time"].pop("median_s"), "time: lacks median_s"),
        (lambda d: d.update(mfu=float("nan")), "NaN is not JSON"),
        (lambda d: d["time"].update(median_s=0.0), "time: median_s is not positive"),
    ],
)
def test_records_are_validated_by_schema_and_status(tmp_path, change, message):
    data = ok().to_json()
    change(data)
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(data) + "\n" + json.dumps(ok(96).to_json()) + "\n")
    found, problems = records.read_results(path)
    assert [r.case.img_size for r in found] == [96]
    assert len(problems) == 1 and problems[0].line == 1 and message in problems[0].message


def test_a_peers_line_is_not_a_result_and_the_other_way_round(tmp_path):
    peer = PeerRecord(
        case=PeerCase("mixer_b16", "timm:mixer_b16_224", 224, 8, "cpu", "float32", "infer", False),
        paired=PairedTiming(0.1, 0.1, 1.0, 0.9, 1.1, 5, 1),
    )
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(peer.to_json()) + "\n" + json.dumps(ok().to_json()) + "\n")
    found, problems = records.read_results(path)
    assert len(found) == 1 and [p.line for p in problems] == [1]
    peers, problems = records.read_peers(path)
    assert len(peers) == 1 and [p.line for p in problems] == [2]


def test_old_files_load_and_keep_their_keys():
    """Every results folder in the repository loads without a problem, and keys are those the files were written with."""
    folders = [p.parent for p in (ROOT / "results").glob("*/results.jsonl")]
    assert folders
    for folder in folders:
        found, problems = records.read_results(folder / "results.jsonl")
        assert problems == [] and found
        raw = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
        assert [r.key for r in found] == [records.case_key(d["case"]) for d in raw]
        assert [r.to_json()["time"]["median_s"] for r in found if r.status == "ok"] == [
            d["time"]["median_s"] for d in raw if d["status"] == "ok"
        ]


def test_case_key_is_order_independent():
    a = rec("m", 64, overrides={"x": 1, "y": 2}).case
    b = rec("m", 64, overrides={"y": 2, "x": 1}).case
    assert a.key == b.key
    assert a.key != a.replace(img_size=96).key
    assert a.key == a.replace(label="other name").key  # the label is not part of the key
    assert a.key != a.replace(threads=1).key and "threads" not in a.key  # keys of old records stay


def test_latest_by_key_keeps_newest():
    found = [rec("m", 64, "error"), ok(96), ok(64)]
    latest = records.latest_by_key(found)
    assert len(latest) == 2
    assert latest[found[0].key].status == "ok"
