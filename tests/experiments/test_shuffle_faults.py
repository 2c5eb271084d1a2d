"""shuffle --overwrite interrupted: the earlier results stay whole; outputs get ordinary file modes (issue 14)."""

from __future__ import annotations

import os
import stat

from bench import cli

ARGS = ["--seeds", "1", "--steps", "1", "--train-size", "64", "--test-size", "16", "--models", "resnet"]
OUTPUTS = ("runs.jsonl", "summary.json", "shuffle.md", "shuffle.png")


def code(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def test_interrupted_overwrite_keeps_the_earlier_results_and_modes_are_ordinary(tmp_path, monkeypatch, capsys):
    from bench.experiments import shuffle

    out = tmp_path / "shuffle"
    assert code(["shuffle", "--out", str(out), *ARGS]) == 0
    umask = os.umask(0)
    os.umask(umask)
    for name in OUTPUTS:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name
    before = {name: (out / name).read_bytes() for name in OUTPUTS}

    real = shuffle.run_experiment

    def interrupted(config, on_record=None):
        def once(record, i, total):
            on_record(record, i, total)
            raise KeyboardInterrupt  # Ctrl-C after the first new run

        return real(config, once)

    monkeypatch.setattr(shuffle, "run_experiment", interrupted)
    assert code(["shuffle", "--out", str(out), "--overwrite", *ARGS]) == 130
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before  # nothing new beside the old summary
    assert len((out / "runs.jsonl.partial").read_text().splitlines()) == 1  # the finished new run is kept apart
    assert "untouched" in capsys.readouterr().err
