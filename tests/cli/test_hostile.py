"""Hostile files and extreme inputs (issue 19): symlinks, special files, escapes, huge numbers.

Each test plants what a hostile but fair user could put in a folder or on the command line
and checks the one-line refusal (or the escaped text), never a traceback, a hang or a write
outside the output folder.
"""

from __future__ import annotations

import json
import os

import pytest

from bench import cli, files
from bench.runs.records import ResultsWriter, read_results
from bench.schema import Env
from helpers import main_code, mixer_record, one_line, one_line_error, run_bench, write_results

ESCAPE = "\x1b]0;pwned\x07\x1b[2J"  # sets the terminal title, then clears the screen


def env(**fields) -> Env:
    """The made-up records' environment (a "test cpu"), with ``fields`` changed."""
    return Env(**{"device": "cpu", "device_name": "test cpu", "cpu_model": "test cpu", "torch": "x", **fields})


# --- class 1: nothing is opened through a symbolic link planted in a folder -------------------


def test_lock_through_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").symlink_to(target)
    with pytest.raises(files.UnsafeFile, match="symbolic link"):
        with files.folder_lock(out):
            pass
    assert target.read_text() == "precious\n"


def test_sweep_refuses_a_symlinked_lock_before_any_work(tmp_path, capsys):
    target = tmp_path / "precious.txt"
    target.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").symlink_to(target)
    code = main_code(["sweep", "--models", "mixer_s16", "--resolutions", "64", "--out", str(out), "--no-report"])
    assert code == 2
    one_line_error(capsys, ".lock", "symbolic link")
    assert target.read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_the_lock_never_truncates(tmp_path):
    lock = tmp_path / ".lock"
    before = "x" * 100 + "\n"
    lock.write_text(before)
    with files.folder_lock(tmp_path):
        text = lock.read_text()
    assert len(text) == len(before) and text[20:] == before[20:]  # only the first bytes carry the process id
    assert text[:20].split()[0] == str(os.getpid())


def test_results_through_a_symlink_are_neither_written_nor_read(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text(json.dumps(mixer_record(64).to_json()) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").symlink_to(elsewhere)
    with pytest.raises(files.UnsafeFile, match="symbolic link"):
        ResultsWriter(out / "results.jsonl")
    with pytest.raises(files.UnsafeFile, match="symbolic link"):
        read_results(out / "results.jsonl")
    assert main_code(["report", str(out)]) == 2
    one_line_error(capsys, "symbolic link")
    assert main_code(["compare", str(out), str(out)]) == 2
    one_line_error(capsys, "symbolic link")
    assert len(elsewhere.read_text().splitlines()) == 1


def test_dashboard_does_not_publish_what_a_symlink_points_at(tmp_path):
    from bench.site import dashboard

    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    report_dir = tmp_path / "sweep"
    report_dir.mkdir()
    (report_dir / "report.md").write_text("# report\n")
    (report_dir / "x.png").symlink_to(secret)
    dest = tmp_path / "site"
    dest.mkdir()
    with pytest.raises(dashboard.DashboardError, match="symbolic link"):
        dashboard._build_report_dir(report_dir, dest)
    assert not (dest / "x.png").exists()
    (report_dir / "x.png").unlink()
    (report_dir / "report.md").unlink()
    (report_dir / "report.md").symlink_to(secret)
    with pytest.raises(dashboard.DashboardError, match="symbolic link"):
        dashboard._build_report_dir(report_dir, dest)
    assert not (dest / "report.md").exists()


# --- class 4: FIFOs and devices are refused in one line, never waited on ---------------------


def test_sweep_resume_refuses_a_fifo_as_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "results.jsonl")
    done = run_bench("sweep", "--models", "mixer_s16", "--resolutions", "64", "--out", out, "--resume", "--no-report")
    assert done.returncode == 2
    one_line(done.stderr, "FIFO")


@pytest.mark.parametrize("name", ["machine.json", "peers.jsonl"])
def test_sweep_refuses_a_fifo_beside_the_results(tmp_path, name):
    out = write_results(tmp_path / "out", [mixer_record(64)])
    os.mkfifo(out / name)
    done = run_bench("sweep", "--models", "mixer_s16", "--resolutions", "64", "--out", out, "--resume", "--no-report")
    assert done.returncode == 2
    one_line(done.stderr, name, "FIFO")


def test_report_does_not_wait_on_a_fifo_peers_file(tmp_path):
    out = write_results(tmp_path / "out", [mixer_record(s) for s in (64, 96, 128)])
    os.mkfifo(out / "peers.jsonl")
    done = run_bench("report", out)
    assert done.returncode == 2
    one_line(done.stderr, "peers.jsonl", "FIFO")


def test_report_does_not_wait_on_a_fifo_machine_json(tmp_path):
    out = write_results(tmp_path / "out", [mixer_record(s) for s in (64, 96, 128)])
    os.mkfifo(out / "machine.json")
    done = run_bench("report", out)
    assert done.returncode == 0, done.stderr
    assert "machine.json is a FIFO" in done.stderr and "Traceback" not in done.stderr
    assert (out / "report.md").is_file()


def test_a_device_is_refused(tmp_path):
    with pytest.raises(files.UnsafeFile, match="character device"):
        files.read_text("/dev/zero")


# --- class 3: sizes and counts bounded before any work ----------------------------------------

BOUNDED = {
    "flops huge resolution": (["flops", "--resolutions", "200000"], "at most 8,192"),
    "flops huge patch": (["flops", "--patch-sizes", "100000"], "at most 8,192"),
    "sweep huge resolution": (["sweep", "--resolutions", "64,200000"], "at most 8,192"),
    "sweep huge batch": (["sweep", "--batch", str(10**20)], "at most 65,536"),
    "sweep huge rounds": (["sweep", "--rounds", str(10**9)], "at most 1,000"),
    "sweep huge min-run-time": (["sweep", "--min-run-time", "1e12"], "at most 3600"),
    "shuffle huge steps": (["shuffle", "--steps", str(10**12)], "at most 1,000,000"),
    "properties huge depth": (["properties", "--num-blocks", str(10**9)], "at most 1,000"),
}


@pytest.mark.parametrize("name", list(BOUNDED))
def test_huge_numbers_are_refused_by_the_parser_naming_the_limit(name, tmp_path, capsys, monkeypatch):
    argv, needle = BOUNDED[name]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2
    one_line_error(capsys, needle)
    assert list(tmp_path.iterdir()) == []


# --- class 6: what is written is what it says -------------------------------------------------


def test_repeated_grid_values_collapse_to_one_case():
    from bench.runs import presets

    entries = presets.expand(presets.PRESETS["quick"], ["vit_s16", "vit_s16"], None)
    cases = presets.build_grid(
        entries, [64, 64], [None], batch=1, device="cpu", dtypes=["float32"], modes=["infer"], threads=1
    )
    assert len(cases) == 1


def test_flops_counts_repeated_values_once():
    from bench.runs import counts

    assert len(counts.plan(["vit_s16", "vit_s16"], [64, 64], None)) == 1


def test_report_page_allows_same_origin_images_only():
    from bench.site import dashboard

    page = dashboard.render_report("![x](https://example.com/x.png)", "sweep", "vendor/bootstrap.min.css")
    policy = page.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["default-src"] == ["'none'"]
    assert directives["img-src"] == ["'self'"]


# --- class 2: text from results files is escaped where it meets a terminal or Markdown ---------


def test_report_and_compare_console_escape_a_label_and_env(tmp_path, capsys):
    a = write_results(
        tmp_path / "a", [mixer_record(s, label="mixer" + ESCAPE, env=env(torch="1" + ESCAPE)) for s in (64, 96)]
    )
    b = write_results(tmp_path / "b", [mixer_record(s, label="mixer" + ESCAPE, env=env(torch="2")) for s in (64, 96)])
    assert main_code(["compare", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    assert "note: A and B differ" in captured.err  # the note names the environment values...
    for stream in (captured.out, captured.err):
        assert "\x1b" not in stream and "\x07" not in stream  # ...escaped
    assert "mixer\\x1b]0;pwned\\x07\\x1b[2J" in captured.out and "\\x1b]0;pwned" in captured.err
    assert main_code(["report", str(a)]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err and "mixer\\x1b]0;pwned" in captured.out


def test_merge_conflict_message_is_escaped(tmp_path, capsys):
    a = write_results(tmp_path / "a", [mixer_record(64, label="mixer" + ESCAPE, seconds=0.001)])
    b = write_results(tmp_path / "b", [mixer_record(64, label="mixer" + ESCAPE, seconds=0.002)])
    assert main_code(["merge", str(tmp_path / "m"), str(a), str(b)]) == 2
    err = capsys.readouterr().err
    one_line(err, "conflicting")
    assert "\x1b" not in err


def test_a_label_cannot_forge_markdown_in_the_report(tmp_path):
    from markdown_it import MarkdownIt

    forged = "mixer | 1 | 2 |\n# Forged heading\n| forged | row |\n![x](https://example.com/t.png)"
    out = write_results(
        tmp_path / "out", [mixer_record(s, label=forged, env=env(device="- # env")) for s in (64, 96, 128)]
    )
    assert main_code(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    headings = [t for t in tokens if t.type == "heading_open"]
    assert all(tokens[tokens.index(h) + 1].content != "Forged heading" for h in headings)
    assert not [
        t
        for t in tokens
        if t.type == "inline" and any(c.type == "image" and "example" in c.attrGet("src") for c in t.children or [])
    ]
    for line in text.splitlines():  # every table row has as many cells as its header
        assert "forged | row" not in line.replace("\\|", "")
    case_rows = [line for line in text.split("## Cases")[1].splitlines() if line.startswith("| ")]
    assert {line.replace("\\|", "").count("|") for line in case_rows} == {16}


def test_a_mathtext_label_is_drawn_as_text(tmp_path):
    out = write_results(tmp_path / "out", [mixer_record(s, label="$x^$ mixer $\\frac{}{}$") for s in (64, 96, 128)])
    done = run_bench("report", out)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
