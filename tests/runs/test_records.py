"""results.jsonl: append-and-flush writer, reader that reports broken lines by number, resume keys."""

from __future__ import annotations

import json

from bench.runs import records as results


def rec(model: str, size: int, status: str = "ok") -> dict:
    return {"case": {"model": model, "img_size": size, "overrides": {"b": 1, "a": 2}}, "status": status}


def test_roundtrip_and_flush(tmp_path):
    path = tmp_path / "results.jsonl"
    with results.ResultsWriter(path) as w:
        w.append(rec("m", 64))
        # flushed at once: another reader sees the line before the writer is closed
        assert path.read_text().count("\n") == 1
        w.append(rec("m", 96))
    records, problems = results.read_results(path)
    assert problems == []
    assert [r["case"]["img_size"] for r in records] == [64, 96]


def test_broken_lines_reported_by_number_and_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    good = json.dumps(rec("m", 64))
    path.write_text(good + "\n{not json\n" + json.dumps([1, 2]) + "\n\n" + good.replace("64", "96") + "\n" + good[:20])
    before = path.read_bytes()
    records, problems = results.read_results(path)
    assert [r["case"]["img_size"] for r in records] == [64, 96]
    assert [p.line for p in problems] == [2, 3, 6]
    assert "not valid JSON" in problems[0].message and "line 2" in str(problems[0])
    assert "not a result record" in problems[1].message
    assert path.read_bytes() == before  # reading never rewrites

    # appending after a broken last line: the broken line stays, the new record gets its own line
    with results.ResultsWriter(path) as w:
        w.append(rec("m", 128))
    assert path.read_bytes().startswith(before)
    records, problems = results.read_results(path)
    assert [r["case"]["img_size"] for r in records] == [64, 96, 128]
    assert [p.line for p in problems] == [2, 3, 6]


def test_case_key_is_order_independent():
    a = {"model": "m", "overrides": {"x": 1, "y": 2}, "img_size": 64}
    b = {"img_size": 64, "overrides": {"y": 2, "x": 1}, "model": "m"}
    assert results.case_key(a) == results.case_key(b)
    assert results.case_key(a) != results.case_key(dict(a, img_size=96))


def test_latest_by_key_keeps_newest():
    records = [rec("m", 64, "error"), rec("m", 96), rec("m", 64, "ok")]
    latest = results.latest_by_key(records)
    assert len(latest) == 2
    assert latest[results.case_key(records[0]["case"])]["status"] == "ok"
