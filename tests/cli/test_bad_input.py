"""Bad input on the command line: one line on stderr, exit code 2, nothing written, never a hang."""

from __future__ import annotations

import os

import pytest

from bench import cli
from helpers import ROOT, main_code, one_line_error

CPUS = len(os.sched_getaffinity(0))


REFUSED = {
    # (argv, what the one line must say)
    "sweep min-run-time nan": (["sweep", "--min-run-time", "nan"], "finite"),
    "sweep min-run-time inf": (["sweep", "--min-run-time", "inf"], "finite"),
    "sweep min-run-time 0": (["sweep", "--min-run-time", "0"], "positive"),
    "sweep rounds 0": (["sweep", "--peers", "--rounds", "0"], "positive"),
    "sweep empty out": (["sweep", "--out", ""], "empty"),
    "sweep too many threads": (["sweep", "--threads", str(CPUS + 1)], f"only {CPUS} CPU"),
    "merge empty out": (["merge", "", "a"], "empty"),
    "shuffle empty out": (["shuffle", "--out", ""], "empty"),
    "compare factor nan": (["compare", "a", "b", "--factor", "nan"], "finite"),
    "compare factor inf": (["compare", "a", "b", "--factor", "inf"], "finite"),
    "properties huge seed": (["properties", "--seed", "99999999999999999999999"], "2**63"),
    "properties negative seed": (["properties", "--seed", "-1"], "2**63"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_bad_numbers_and_paths_are_refused_by_the_parser(name, tmp_path, capsys, monkeypatch):
    """Refused while parsing: before any model is built, any folder created, any loop started."""
    argv, needle = REFUSED[name]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2
    one_line_error(capsys, needle)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even into the current folder


def test_compare_factor_must_be_above_1(tmp_path, capsys):
    assert main_code(["compare", str(tmp_path), str(tmp_path), "--factor", "1"]) == 2
    one_line_error(capsys, "above 1")


def test_properties_out_of_memory_is_one_line(tmp_path):
    """A Mixer at 100,000 px has a 160 GB token-mixing layer; under a 6 GiB address-space limit it cannot be allocated."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    done = subprocess.run(
        [sys.executable, "-m", "bench", "properties", "--models", "mixer_s16", "--img-size", "100000"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "out of memory" in err, err
