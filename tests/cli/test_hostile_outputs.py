"""Hostile conditions around what the commands write: concurrent writers, lost output streams, a non-UTF-8
locale, planted links and kills while publishing, numbers and JSON from outside, silently lost files.

Each test failed on the code before its fix (see the project's guarantees page for the rules they hold).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import subprocess
import sys

import pytest

from bench import files
from bench.runs import records
from helpers import PYTHONPATH, ROOT, fake_record, main_code, one_line, run_bench, tiny_cases, tiny_sweep, write_results

TINY_SWEEP = tiny_sweep((32, 48))


def held_lock(folder):
    """What a running sweep or merge holds on ``folder``: an flock on folder/.lock (close the file to release)."""
    folder.mkdir(parents=True, exist_ok=True)
    held = open(folder / files.LOCK_NAME, "w")
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return held


# --- class 1: one writer per output folder, merge included ---------------------------------------


def test_merge_into_a_folder_another_writer_holds_is_refused_and_writes_nothing(tmp_path, capsys):
    source = write_results(tmp_path / "a", [fake_record(c) for c in tiny_cases()])
    out = tmp_path / "out"
    held = held_lock(out)
    try:
        code = main_code(["merge", str(out), str(source)])
    finally:
        held.close()
    assert code == 2
    one_line(capsys.readouterr().err, "in use by another sweep or merge")
    assert sorted(p.name for p in out.iterdir()) == [files.LOCK_NAME]
    # once the lock is free the merge goes through; a second merge into the same folder is refused
    assert main_code(["merge", str(out), str(source)]) == 0
    before = (out / records.FILENAME).read_bytes()
    assert main_code(["merge", str(out), str(source)]) == 2
    one_line(capsys.readouterr().err, "already exists")
    assert (out / records.FILENAME).read_bytes() == before


def test_a_sweep_refuses_a_folder_a_merge_is_writing(tmp_path, stub_measuring, capsys):
    out = tmp_path / "out"
    held = held_lock(out)
    try:
        code = main_code([*TINY_SWEEP, "--out", str(out)])
    finally:
        held.close()
    assert code == 2 and stub_measuring == []
    one_line(capsys.readouterr().err, "in use by another sweep or merge")


# --- class 2: printing is best-effort, measuring is not --------------------------------------------


class GoneReader(io.StringIO):
    """Standard output whose reader has gone (``| head -1`` after its line): every write is a broken pipe."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("stdout", [GoneReader, None], ids=["broken-pipe", "closed"])
def test_a_sweep_without_a_reader_measures_every_case(stdout, tmp_path, stub_measuring, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", stdout() if stdout else None)
    code = main_code([*TINY_SWEEP, "--out", str(tmp_path)])
    assert code == 0 and len(stub_measuring) == 2
    assert [r.case.img_size for r in records.read_results(tmp_path / records.FILENAME)[0]] == [32, 48]


@pytest.mark.parametrize("stdout", [GoneReader, None], ids=["broken-pipe", "closed"])
def test_merge_and_report_without_a_reader_write_their_files(stdout, tmp_path, monkeypatch, capsys):
    source = write_results(tmp_path / "a", [fake_record(c) for c in tiny_cases((32, 48, 64))])
    monkeypatch.setattr(sys, "stdout", stdout() if stdout else None)
    assert main_code(["merge", str(tmp_path / "out"), str(source)]) == 0
    assert main_code(["report", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").stat().st_size > 0


def bench_into_closed_pipe(*argv) -> subprocess.CompletedProcess:
    """``python -m bench ARGV`` writing to a pipe whose reader is already gone (``| head -1`` after its line, without
    the race): every write to standard output fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "bench", *map(str, argv)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=PYTHONPATH),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)


@pytest.mark.slow
def test_a_real_sweep_into_a_closed_pipe_measures_everything_and_exits_0(tmp_path):
    """`mixerbench sweep | head -1`, with the reader gone before the first line (no race)."""
    done = bench_into_closed_pipe(*tiny_sweep((32,)), "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    found, problems = records.read_results(tmp_path / records.FILENAME)
    assert problems == [] and [r.status for r in found] == ["ok"]


@pytest.mark.parametrize("redirect", [">&-", "closed pipe"])
def test_merge_without_stdout_writes_its_folder_and_exits_0(redirect, tmp_path):
    source = write_results(tmp_path / "a", [fake_record(c) for c in tiny_cases()])
    argv = ["merge", str(tmp_path / "out"), str(source)]
    if redirect == ">&-":
        command = " ".join([sys.executable, "-m", "bench", *argv, ">&-"])
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=PYTHONPATH),
            capture_output=True,
            text=True,
            timeout=120,
        )
    else:
        done = bench_into_closed_pipe(*argv)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert len(records.read_results(tmp_path / "out" / records.FILENAME)[0]) == 2


def test_sigterm_is_one_line_exit_143_and_leaves_no_temporary_file(tmp_path):
    write_results(tmp_path, [fake_record(c) for c in tiny_cases((32, 48, 64))])
    # the report is killed while it writes report.md (its atomic writer calls write_text on the temporary file)
    script = (
        "import os, signal, pathlib, sys\n"
        "from bench import cli\n"
        "real = pathlib.Path.write_text\n"
        "def killed(self, *a, **k):\n"
        "    if self.name.startswith('.report.md'):\n"
        "        real(self, 'half a report')\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(self, *a, **k)\n"
        "pathlib.Path.write_text = killed\n"
        f"sys.argv = ['mixerbench', 'report', {str(tmp_path)!r}]\n"
        "cli.console()\n"
    )
    done = run_script(script)
    assert done.returncode == 143, done.stderr
    one_line(done.stderr, "terminated")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not (tmp_path / "report.md").exists()


# --- class 3: every file written is UTF-8, whatever the locale -------------------------------------

C_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
LABEL = "Mixer–µ × ViT ✓"  # an en dash, a micro sign, a multiplication sign, a check mark


def run_script(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -c SCRIPT`` with the project importable, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=PYTHONPATH),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_in_c_locale(script: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=dict(env, PYTHONPATH=PYTHONPATH, **C_LOCALE),
        capture_output=True,
        timeout=300,
    )


def test_report_and_report_page_are_utf8_under_an_ascii_locale(tmp_path):
    from helpers import mixer_record

    write_results(tmp_path, [mixer_record(size, label=LABEL) for size in (32, 48, 64, 80)])
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(
        '<ul><li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li></ul>\n', encoding="utf-8"
    )
    done = run_in_c_locale(
        "import locale, sys; from pathlib import Path\n"
        "assert locale.getpreferredencoding(False).lower() in ('ascii', 'ansi_x3.4-1968'), locale.getpreferredencoding()\n"
        "from bench import cli; from bench.site import dashboard\n"
        f"code = cli.main(['report', {str(tmp_path)!r}])\n"
        f"dashboard.publish_report(Path({str(tmp_path)!r}), Path({str(html_dir)!r}))\n"
        "sys.exit(code)\n"
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    for path in (tmp_path / "report.md", html_dir / "report" / "report.md", html_dir / "report" / "index.html"):
        assert LABEL in path.read_bytes().decode("utf-8"), path  # UnicodeDecodeError: written in another encoding
    assert b"\\u2013" in done.stdout or LABEL.encode() not in done.stdout  # the console gets escapes, not a crash


def test_every_text_file_the_package_writes_or_reads_names_its_encoding():
    """A static check: every write_text and text-mode open() for writing in bench/ says encoding=, and so does every
    read_text and text-mode open() for reading outside bench/measure (which reads the system's /proc and /sys)."""
    import ast

    missing = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        system = path.parent.name == "measure"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if ast.unparse(node.func) in ("os.open", "tarfile.open"):  # a descriptor; a binary archive
                continue
            modes = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
            modes += [k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
            mode = str(modes[0]) if modes else "r"
            writes = name == "write_text" or (name == "open" and "b" not in mode and mode != "r")
            reads = name == "read_text" or (name == "open" and mode == "r")
            if (writes and "/proc/" not in ast.unparse(node)) or (reads and not system):
                if "encoding" not in {k.arg for k in node.keywords}:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)[:60]}")
    assert missing == [], missing


# --- class 5: numbers and JSON from outside --------------------------------------------------------

SCHEDULER_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX")
SCHEDULER_VARS += ("SLURM_ARRAY_TASK_STEP", "JOB_COMPLETION_INDEX", "MIXERBENCH_SHARD_COUNT")


@pytest.mark.parametrize(
    "environ",
    [
        {"SLURM_ARRAY_TASK_ID": "1_0", "SLURM_ARRAY_TASK_COUNT": "20"},  # int() reads 10
        {"SLURM_ARRAY_TASK_ID": "\u0663", "SLURM_ARRAY_TASK_COUNT": "4"},  # Arabic-Indic three: int() reads 3
        {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "\uff13"},  # fullwidth 3
        {"JOB_COMPLETION_INDEX": "0", "MIXERBENCH_SHARD_COUNT": "2_0"},
    ],
)
def test_shard_numbers_from_the_environment_are_ascii_digits_only(environ, tmp_path, monkeypatch, capsys):
    for name in SCHEDULER_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main_code([*TINY_SWEEP, "--out", str(tmp_path / "out")]) == 2
    one_line(capsys.readouterr().err, "ASCII digits", "from the environment")
    assert not (tmp_path / "out").exists()


def test_a_command_line_shard_of_non_ascii_digits_is_refused(tmp_path, capsys):
    assert main_code([*TINY_SWEEP, "--shard", "\u0663/4", "--out", str(tmp_path / "out")]) == 2
    one_line(capsys.readouterr().err, "--shard", "K/N")


DEEP = "[" * 100_000 + "]" * 100_000


def test_a_deeply_nested_shard_marker_is_one_line(tmp_path, capsys):
    folder = write_results(tmp_path / "shard", [fake_record(c) for c in tiny_cases()])
    (folder / "shard.json").write_text(DEEP)
    assert main_code(["merge", str(tmp_path / "out"), str(folder)]) == 2
    one_line(capsys.readouterr().err, "shard.json", "nested deeper")
    assert not (tmp_path / "out").exists()


def test_a_deeply_nested_or_huge_asv_config_is_one_line(tmp_path, capsys):
    pytest.importorskip("asv")
    config = tmp_path / "asv.conf.json"
    config.write_text('{"version": 1, "repo": ".", "x": ' + DEEP + "}")
    assert main_code(["dashboard", "--config", str(config), "--no-publish"]) == 2
    one_line(capsys.readouterr().err, "asv.conf.json", "nested deeper")
    config.write_text('{"version": 1, "repo": ".", "x": "' + "x" * (2 << 20) + '"}')
    assert main_code(["dashboard", "--config", str(config), "--no-publish"]) == 2
    one_line(capsys.readouterr().err, "asv.conf.json", "larger than")


def test_a_deeply_nested_device_table_is_one_line(tmp_path):
    from bench.analysis import predict

    path = tmp_path / "devices.json"
    path.write_text(DEEP)
    with pytest.raises(ValueError) as caught:
        predict.read_device_file(path)
    assert "nested deeper" in str(caught.value) and str(path) in str(caught.value)


def test_a_line_over_the_bound_is_never_read_whole(tmp_path, monkeypatch):
    import tracemalloc

    from bench import schema

    monkeypatch.setattr(schema, "MAX_LINE_BYTES", 64 * 1024)
    first, last = (fake_record(c) for c in tiny_cases())
    path = write_results(tmp_path, [first]) / records.FILENAME
    with open(path, "ab") as f:
        f.write(b'{"label": "' + b"x" * (32 << 20) + b'"}\n')  # 32 MiB on one line: 512 times the bound
    write_results(tmp_path, [last])
    tracemalloc.start()
    try:
        found, problems = records.read_results(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.case.img_size for r in found] == [32, 48]
    assert len(problems) == 1 and problems[0].line == 2 and "more than 65536 bytes" in problems[0].message
    assert peak < 8 << 20, peak  # the long line was skipped in pieces, never held whole


# --- class 6: nothing that holds measurements is lost silently --------------------------------------


def test_a_damaged_machine_json_is_kept_beside_with_a_warning(tmp_path, stub_measuring, capsys):
    (tmp_path / "machine.json").write_text('{"schema": 1, "runs": [{"device": "cpu", "machine_id": "earlier"')
    assert main_code([*TINY_SWEEP, "--out", str(tmp_path)]) == 0
    (kept,) = tmp_path.glob("machine.json.damaged-*")
    assert kept.read_text().endswith('"machine_id": "earlier"')  # the earlier runs' entries, as they were
    assert json.loads((tmp_path / "machine.json").read_text())["runs"]  # a new one, this run's entry
    one_line([line for line in capsys.readouterr().err.splitlines() if "machine.json" in line][0], kept.name)


def test_a_merge_with_no_valid_line_is_an_error_and_writes_nothing(tmp_path, capsys):
    source = write_results(tmp_path / "a", [], extra_lines=['{"broken', "[]", json.dumps({"case": {"model": "x"}})])
    assert main_code(["merge", str(tmp_path / "out"), str(source)]) == 2
    one_line(capsys.readouterr().err, "no valid record", "3 lines")
    assert not (tmp_path / "out").exists()


def test_resume_keeps_a_valid_record_and_skips_a_newer_invalid_line_of_its_case(tmp_path, stub_measuring, capsys):
    assert main_code([*TINY_SWEEP, "--out", str(tmp_path)]) == 0 and len(stub_measuring) == 2
    first = json.loads((tmp_path / records.FILENAME).read_text().splitlines()[0])
    first["time"]["times_s"][0] = -1.0  # a newer line of the first case, its numbers impossible
    write_results(tmp_path, [], extra_lines=[json.dumps(first)])
    capsys.readouterr()
    assert main_code([*TINY_SWEEP, "--out", str(tmp_path), "--resume"]) == 0
    captured = capsys.readouterr()
    assert len(stub_measuring) == 2  # both valid records stand: nothing measured again
    assert "(2 already in" in captured.out and "1 invalid line skipped" in captured.out
    warning = one_line(captured.err, "line 3", "(line skipped)")
    assert "measured again" not in warning


def test_shuffle_overwrite_keeps_the_earlier_runs_beside(tmp_path, capsys):
    args = ["--seeds", "1", "--steps", "1", "--train-size", "64", "--test-size", "16", "--models", "resnet"]
    out = tmp_path / "shuffle"
    assert main_code(["shuffle", "--out", str(out), *args]) == 0
    before = (out / "runs.jsonl").read_bytes()
    capsys.readouterr()
    assert main_code(["shuffle", "--out", str(out), "--overwrite", *args]) == 0
    (kept,) = out.glob("runs.jsonl.replaced-*")
    assert kept.read_bytes() == before and (out / "runs.jsonl").read_bytes() != before
    assert kept.name in [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")][0]


# --- class 4: publishing the dashboard -------------------------------------------------------------

NAV = '<ul class="nav"><li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li></ul>'
JQUERY = "https://code.jquery.com/jquery-3.3.1.min.js"
JQUERY_LOCAL = "vendor/jquery@3.3.1/dist/jquery.min.js"


def asv_project(base, html_dir="html", results_dir="results"):
    """A stand-in asv project: asv.conf.json, a results folder and a published site (index.html loading jQuery)."""
    repo = base / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "results" / "benchmarks.json").write_text("{}\n")
    config = repo / "asv.conf.json"
    config.write_text(json.dumps({"version": 1, "repo": ".", "html_dir": html_dir, "results_dir": results_dir}))
    site = repo / "html"
    site.mkdir()
    (site / "index.html").write_text(f'<html><head><script src="{JQUERY}"></script></head><body>{NAV}</body></html>\n')
    return config


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "html_dir, what",
    [(".", "holds the folder"), ("..", "holds the folder"), ("results", "overlaps"), ("results/html", "overlaps")],
)
def test_an_html_dir_that_publishing_would_destroy_is_refused_before_any_work(html_dir, what, tmp_path, capsys):
    pytest.importorskip("asv")
    config = asv_project(tmp_path, html_dir=html_dir)
    before = snapshot(tmp_path)
    assert main_code(["dashboard", "--config", str(config)]) == 2
    one_line(capsys.readouterr().err, "html_dir", what)
    assert snapshot(tmp_path) == before


def dashboard_no_publish(config, *more):
    from helpers import NPM_CACHE

    if not all((NPM_CACHE / name).is_file() for name in ("jquery-3.3.1.tgz", "bootstrap-3.1.1.tgz")):
        pytest.skip("the npm tarballs are not cached (run `mixerbench dashboard` once)")
    return ["dashboard", "--config", str(config), "--no-publish", "--cache", str(NPM_CACHE), *more]


def test_the_dashboard_never_writes_through_a_symlink_planted_in_the_site(tmp_path, capsys):
    pytest.importorskip("asv")
    config = asv_project(tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    planted = config.parent / "html" / JQUERY_LOCAL
    planted.parent.mkdir(parents=True)
    planted.symlink_to(precious)
    assert main_code(dashboard_no_publish(config)) == 2
    one_line(capsys.readouterr().err, "symbolic link")
    assert precious.read_text() == "precious\n"


def test_a_full_disk_while_publishing_leaves_the_previous_site_whole(tmp_path):
    pytest.importorskip("asv")
    config = asv_project(tmp_path)
    site = config.parent / "html"
    (site / "vendor").mkdir()
    (site / "vendor" / "old.js").write_text("the previous site's file\n")
    before = snapshot(site)
    done = run_bench(*dashboard_no_publish(config), preexec_fn=limit_file_size(20_000))  # jQuery is 87 kB
    assert done.returncode == 1, done.stderr
    one_line(done.stderr, "File too large")
    assert snapshot(site) == before
    assert sorted(p.name for p in config.parent.iterdir()) == ["asv.conf.json", "html", "results"]


def limit_file_size(limit: int):
    """preexec_fn: files the child writes may not grow past ``limit`` bytes (EFBIG, like a full disk)."""
    import resource
    import signal

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("signum, code, word", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_an_interrupt_that_lands_in_a_garbage_collector_callback_still_stops_the_command(signum, code, word):
    # Python swallows an exception raised in a weakref callback or __del__ (it only prints "Exception ignored"):
    # a sweep cancelled by Slurm while the collector ran such a callback measured on until Slurm's SIGKILL.
    script = (
        "import signal, sys, time, weakref\n"
        "from bench import cli\n"
        "from bench.cli import cmd_list\n"
        "def run(args):\n"
        "    class Box: pass\n"
        "    box = Box()\n"
        f"    ref = weakref.ref(box, lambda r: signal.raise_signal(signal.{signum}))\n"
        "    del box  # the callback runs; the interrupt raised inside it is swallowed there\n"
        "    time.sleep(3)\n"
        "    print('ran on')\n"
        "    return 0\n"
        "cmd_list.run = run\n"
        "sys.argv = ['mixerbench', 'list']\n"
        "cli.console()\n"
    )
    done = run_script(script, timeout=60)
    assert done.returncode == code and done.stdout == "", done
    one_line(done.stderr, word)  # no "Exception ignored" report: the interrupt is delivered again instead


def test_sigterm_while_publishing_leaves_the_previous_site_and_nothing_beside_it(tmp_path):
    pytest.importorskip("asv")
    config = asv_project(tmp_path)
    site = config.parent / "html"
    before = snapshot(site)
    script = (
        "import os, signal, sys\n"
        "from bench import cli\n"
        "from bench.site import dashboard\n"
        "real = dashboard._extract\n"
        "def killed(tarball, member, dest):\n"
        "    dest.parent.mkdir(parents=True, exist_ok=True)\n"
        "    dest.write_bytes(b'half a file')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(tarball, member, dest)\n"
        "dashboard._extract = killed\n"
        f"sys.argv = ['mixerbench', *{dashboard_no_publish(config)!r}]\n"
        "cli.console()\n"
    )
    done = run_script(script)
    assert done.returncode == 143, done.stderr
    assert snapshot(site) == before
    assert sorted(p.name for p in config.parent.iterdir()) == ["asv.conf.json", "html", "results"]


def test_what_a_killed_run_left_is_removed_by_the_next_and_nothing_else(tmp_path, capsys):
    pytest.importorskip("asv")
    config = asv_project(tmp_path)
    repo = config.parent
    from bench.site import dashboard

    left = repo / ".html.mixerbench-new-k1ll3d"  # a staging folder of a SIGKILLed run: marked
    (left / "site" / "vendor").mkdir(parents=True)
    (left / dashboard.SITE_MARK).write_text("")
    (left / "site" / "vendor" / "half.js").write_text("half")
    lookalike = repo / ".html.mixerbench-new-notmine"  # the same name, but no mark: never removed
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("keep\n")
    (repo / "html" / ".docs-new-x1").mkdir()  # an older version's staging folder inside the site
    (repo / "html" / ".index.html.x2.tmp").write_text("half a page")
    assert main_code(dashboard_no_publish(config)) == 0
    assert sorted(p.name for p in repo.iterdir()) == [
        ".html.mixerbench-new-notmine",
        "asv.conf.json",
        "html",
        "results",
    ]
    assert (lookalike / "keep.txt").read_text() == "keep\n"
    assert not [p.name for p in (repo / "html").iterdir() if p.name.startswith(".")]
    assert JQUERY_LOCAL in (repo / "html" / "index.html").read_text()


def test_dashboard_help_says_that_mkdocs_yml_is_code(capsys):
    assert main_code(["dashboard", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "mkdocs.yml is code" in text and "docs_dir" in text
