"""Merging sweep folders: machines apart, duplicates collapsed, conflicts refused or resolved, atomic output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.runs import merge as mg
from bench.runs import records
from helpers import ROOT

RESULTS = ROOT / "results"


def copy(name: str, tmp_path: Path, as_name: str | None = None) -> Path:
    target = tmp_path / (as_name or name)
    target.mkdir(parents=True)
    for f in ("results.jsonl", "peers.jsonl"):
        if (RESULTS / name / f).is_file():
            shutil.copy(RESULTS / name / f, target / f)
    return target


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def canon(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["merge", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def altered(folder: Path, line: int, median_s: float, date: str | None) -> dict:
    """Change one record's measurement (and date) in ``folder``; return it."""
    rows = lines(folder / "results.jsonl")
    rows[line]["time"]["median_s"] = median_s
    if date is not None:
        rows[line]["env"]["date"] = date
    write(folder / "results.jsonl", rows)
    return rows[line]


# ---- the real folders ------------------------------------------------------------------------------------------


def test_cpu_and_h200_come_out_as_two_machines(tmp_path):
    cpu, h200 = copy("cpu-quick", tmp_path), copy("h200-paper", tmp_path)
    summary = mg.merge(tmp_path / "out", [cpu, h200])
    cpu_rows, h200_rows = lines(cpu / "results.jsonl"), lines(h200 / "results.jsonl")
    merged = lines(tmp_path / "out" / "results.jsonl")
    assert (summary.records_in, summary.records_out, summary.duplicates) == (62, 62, 0)
    assert len(merged) == len(cpu_rows) + len(h200_rows) == 62
    assert sorted(map(canon, merged)) == sorted(map(canon, cpu_rows + h200_rows))  # records untouched
    typed = {name: records.read_results(f / "results.jsonl")[0] for name, f in (("cpu", cpu), ("h200", h200))}
    cpu_ids, h200_ids = {mg.machine_of(r) for r in typed["cpu"]}, {mg.machine_of(r) for r in typed["h200"]}
    assert len(cpu_ids) == len(h200_ids) == 1 and cpu_ids != h200_ids
    assert set(summary.machines) == cpu_ids | h200_ids
    keys = {(r.key, mg.machine_of(r)) for r in records.read_results(tmp_path / "out" / "results.jsonl")[0]}
    assert len(keys) == 62
    assert summary.folders == (str(cpu), str(h200))
    assert merged == cpu_rows + h200_rows  # in the order read


def test_order_is_where_a_record_was_first_read(tmp_path):
    a, b = copy("cpu-quick", tmp_path, "a"), copy("cpu-quick", tmp_path, "b")
    rows = lines(a / "results.jsonl")
    write(b / "results.jsonl", rows[::-1])
    mg.merge(tmp_path / "out", [a, b])
    assert lines(tmp_path / "out" / "results.jsonl") == rows


def test_merged_folder_reloads_cleanly(tmp_path):
    folders = [copy(n, tmp_path) for n in ("cpu-quick", "h200-paper", "h200-paper-train", "h200-oom")]
    summary = mg.merge(tmp_path / "out", folders)
    found, problems = records.read_results(tmp_path / "out" / "results.jsonl")
    assert problems == []
    assert len(found) == summary.records_out == sum(len(lines(f / "results.jsonl")) for f in folders)
    assert {r.status for r in found} == {"ok", "oom"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.jsonl"]  # no temporary file left
    # merging the merged folder with its sources changes nothing
    again = mg.merge(tmp_path / "again", [tmp_path / "out", *folders])
    assert again.records_out == summary.records_out and again.duplicates == summary.records_out


def test_merging_a_folder_with_itself_collapses_everything(tmp_path):
    cpu = copy("cpu-quick", tmp_path)
    summary = mg.merge(tmp_path / "out", [cpu, cpu])
    assert (summary.records_in, summary.records_out, summary.duplicates) == (40, 20, 20)
    assert lines(tmp_path / "out" / "results.jsonl") == lines(cpu / "results.jsonl")  # same records, same order


def test_peers_are_merged_too(tmp_path):
    a, b = copy("cpu-quick", tmp_path, "a"), copy("cpu-quick", tmp_path, "b")
    shutil.copy(RESULTS / "cpu-peers" / "peers.jsonl", a)
    shutil.copy(RESULTS / "cpu-peers" / "peers.jsonl", b)
    summary = mg.merge(tmp_path / "out", [a, b])
    assert (summary.peers_in, summary.peers_out) == (12, 6)
    assert summary.duplicates == 20 + 6
    assert lines(tmp_path / "out" / "peers.jsonl") == lines(a / "peers.jsonl")
    found, problems = records.read_peers(tmp_path / "out" / "peers.jsonl")
    assert problems == [] and len(found) == 6


def test_a_folders_own_reruns_are_kept_but_a_new_version_conflicts(tmp_path):
    # results/cpu-peers holds each peer case twice (2 threads, then 1: the thread count is not in the case key)
    peers = lines(RESULTS / "cpu-peers" / "peers.jsonl")
    assert len({records.case_key(r["case"]) for r in peers}) == 3 < len(peers) == 6
    a, b = copy("cpu-quick", tmp_path, "a"), copy("cpu-quick", tmp_path, "b")
    write(a / "peers.jsonl", peers)
    write(b / "peers.jsonl", peers[3:])  # b holds only the later run: nothing new
    summary = mg.merge(tmp_path / "out", [a, b])
    assert summary.peers_out == 6 and lines(tmp_path / "out" / "peers.jsonl") == peers
    other = dict(peers[0], paired=dict(peers[0]["paired"], ratio_median=2.0))
    write(b / "peers.jsonl", [other])  # a third version, from another folder
    with pytest.raises(mg.MergeConflict, match=r"conflicting peer results for mixer_b16 \(224 px"):
        mg.merge(tmp_path / "out2", [a, b])
    summary = mg.merge(tmp_path / "out3", [a, b], prefer="newest")
    kept = lines(tmp_path / "out3" / "peers.jsonl")
    assert summary.replaced == 2 and len(kept) == 1 + 2 + 2  # mixer: the newest only; vit, resnet: both runs
    assert [r for r in kept if r["case"]["ours"] == "mixer_b16"] == [peers[3]]  # the newest date


# ---- conflicts -------------------------------------------------------------------------------------------------


def test_conflict_refused_on_the_command_line(tmp_path, capsys):
    a, b = copy("cpu-quick", tmp_path, "a"), copy("cpu-quick", tmp_path, "b")
    altered(b, 2, 0.5, "2026-11-27T00:00:00+00:00")
    code, out, err = run_cli(capsys, tmp_path / "out", a, b)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("mixerbench merge: error: conflicting results for mixer C64 x2 (128 px")
    assert str(a) in err and str(b) in err and "--prefer newest" in err
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder
    with pytest.raises(mg.MergeConflict):
        mg.merge(tmp_path / "out", [a, b])


@pytest.mark.parametrize("newer_first", [False, True])
def test_prefer_newest_keeps_the_newer(tmp_path, capsys, newer_first):
    a, b = copy("cpu-quick", tmp_path, "a"), copy("cpu-quick", tmp_path, "b")
    changed = altered(b, 2, 0.5, "2026-11-27T00:00:00+00:00")
    order = [b, a] if newer_first else [a, b]
    code, out, err = run_cli(capsys, tmp_path / "out", *order, "--prefer", "newest")
    assert code == 0, err
    assert "1 replaced by newer" in out and "machines: 1" in out
    merged = lines(tmp_path / "out" / "results.jsonl")
    assert len(merged) == 20
    kept = [r for r in merged if records.case_key(r["case"]) == records.case_key(changed["case"])]
    assert kept == [changed]


def test_same_date_the_later_folder_wins(tmp_path):
    a, b = copy("cpu-quick", tmp_path, "a"), copy("cpu-quick", tmp_path, "b")
    changed = altered(b, 0, 0.25, None)  # same env.date as a's
    original = lines(a / "results.jsonl")[0]
    for order, expected in (([a, b], changed), ([b, a], original)):
        out = tmp_path / f"out-{order[0].name}"
        summary = mg.merge(out, order, prefer="newest")
        assert summary.replaced == 1
        kept = [r for r in lines(out / "results.jsonl") if r["case"] == changed["case"]]
        assert kept == [expected]
    # the original also sits in a third, later folder: that makes it the later one
    summary = mg.merge(tmp_path / "out-aba", [a, b, a], prefer="newest")
    assert [r for r in lines(tmp_path / "out-aba" / "results.jsonl") if r["case"] == changed["case"]] == [original]


def test_failures_are_superseded(tmp_path):
    a, b = copy("cpu-quick", tmp_path, "a"), copy("cpu-quick", tmp_path, "b")
    rows = lines(a / "results.jsonl")
    failed = {
        "schema": 1,
        "case": rows[4]["case"],
        "label": rows[4]["label"],
        "env": rows[4]["env"],
        "status": "error",
        "error": "RuntimeError: boom",
        "elapsed_s": 0.1,
    }
    write(a / "results.jsonl", rows[:4] + [failed] + rows[5:])
    summary = mg.merge(tmp_path / "out", [a, b])
    assert summary.superseded == 1 and summary.records_out == 20
    assert {r["status"] for r in lines(tmp_path / "out" / "results.jsonl")} == {"ok"}
    # failures on both sides and nothing ok: no conflict, the newest failure stays
    later = dict(failed, error="RuntimeError: again", env=dict(failed["env"], date="2026-12-01T00:00:00+00:00"))
    write(a / "results.jsonl", [failed])
    write(b / "results.jsonl", [later])
    summary = mg.merge(tmp_path / "out2", [b, a])
    # written in the current schema version: the same record as the line read
    assert lines(tmp_path / "out2" / "results.jsonl") == [records.Record.from_json(later).to_json()]
    assert summary.superseded == 1


def test_machine_ids_of_new_records_keep_cases_apart(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    row = lines(RESULTS / "cpu-quick" / "results.jsonl")[0]
    write(a / "results.jsonl", [dict(row, machine={"machine_id": "aaaa11112222"})])
    write(
        b / "results.jsonl", [dict(row, machine={"machine_id": "bbbb11112222"}, time=dict(row["time"], median_s=9.0))]
    )
    summary = mg.merge(tmp_path / "out", [a, b])
    assert summary.machines == ("aaaa11112222", "bbbb11112222") and summary.records_out == 2


# ---- refusals and atomicity ------------------------------------------------------------------------------------


def test_refusals_are_one_line_exit_2(tmp_path, capsys):
    a = copy("cpu-quick", tmp_path, "a")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, tmp_path / "out", a, empty)
    assert code == 2 and err.count("\n") == 1 and "empty/results.jsonl not found" in err
    assert not (tmp_path / "out").exists()

    existing = copy("h200-paper", tmp_path, "existing")
    before = (existing / "results.jsonl").read_bytes()
    code, _, err = run_cli(capsys, existing, a)
    assert code == 2 and err.count("\n") == 1 and "already exists" in err
    assert (existing / "results.jsonl").read_bytes() == before

    with pytest.raises(SystemExit) as info:  # argparse: one line, exit 2
        main(["merge", str(tmp_path / "out"), str(a), "--prefer", "oldest"])
    assert info.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    with pytest.raises(ValueError, match="prefer must be"):
        mg.merge(tmp_path / "out", [a], prefer="oldest")


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch, capsys):
    a = copy("cpu-quick", tmp_path, "a")
    shutil.copy(RESULTS / "cpu-peers" / "peers.jsonl", a)
    from bench import files

    real_replace = files.os.replace

    def replace(src, dst):
        if Path(dst).name == "results.jsonl":
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(OSError):
        mg.merge(tmp_path / "out", [a])
    assert not (tmp_path / "out").exists()  # peers.jsonl taken back, temporary files and the new folder gone

    (tmp_path / "kept").mkdir()  # a folder that existed before stays, empty
    code, _, err = run_cli(capsys, tmp_path / "kept", a)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert list((tmp_path / "kept").iterdir()) == []


def test_broken_lines_are_skipped_and_reported(tmp_path, capsys):
    a = copy("cpu-quick", tmp_path, "a")
    with open(a / "results.jsonl", "a") as f:
        f.write('{"case": {"model": "x"}, "status": "ok", "tim')
    code, out, err = run_cli(capsys, tmp_path / "out", a)
    assert code == 0
    assert "warning:" in err and "line 21" in err and "warning" not in out  # warnings on stderr
    assert len(lines(tmp_path / "out" / "results.jsonl")) == 20


def test_summary_and_cli_output(tmp_path, capsys):
    a, b = copy("cpu-quick", tmp_path), copy("h200-paper", tmp_path)
    code, out, err = run_cli(capsys, tmp_path / "out", a, b)
    assert code == 0 and err == ""
    assert "62 records in, 62 out" in out and "machines: 2" in out
    summary = mg.merge(tmp_path / "out2", [a, b])
    payload = json.loads(json.dumps(summary.to_json()))
    assert payload["records_out"] == 62 and len(payload["machines"]) == 2


def test_command_imports_nothing_heavy():
    code = (
        "import sys, bench.cli.cmd_merge, bench.runs.merge; "
        "assert not {'torch', 'timm', 'numpy', 'matplotlib'} & set(sys.modules), 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT)})
