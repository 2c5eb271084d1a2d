"""Values the schema must reject (issue 19, class 5): each bad line is a one-line warning naming the file
and the line, from report, compare, merge and sweep --resume, never a traceback; the other lines are used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cli
from bench.schema import Profile, Record
from helpers import mixer_record, write_results

SIZES = (64, 96, 128)


def profile(tokens: int) -> Profile:
    """Three profiled steps whose time and work per operator class are linear in S (no attention: a Mixer)."""
    per_token = {
        "attention": 0.0,
        "data_movement": 1e-8,
        "dense": 4e-9,
        "norm_elementwise": 1e-9,
        "token_mixing": 5e-10,
    }
    cpu_s = {k: v * tokens for k, v in per_token.items()}
    work = {"attention": 0, "data_movement": 0, "dense": 1000, "norm_elementwise": 10, "token_mixing": 100}
    return Profile(
        steps=3,
        cpu_s=cpu_s,
        cpu_s_rounds={k: (v, v, v) for k, v in cpu_s.items()},
        tensor_peak_bytes_rounds=(4096 * tokens,) * 3,
        work={k: w * tokens for k, w in work.items()},
    )


def record(size: int) -> Record:
    """A record of the case `sweep --models mixer_s16 --resolutions SIZE --patch-sizes 4 --threads 1 --batch 1` runs."""
    return mixer_record(size, threads=1, profile=profile((size // 4) ** 2))


def bad(change) -> str:
    """A valid line (160 px) as the schema writes it, then ``change``d."""
    r = record(160).to_json()
    change(r)
    return json.dumps(r)


BAD_LINES = {
    "a string where a number belongs": bad(lambda r: r["time"].update(median_s="fast")),
    "a string as a count": bad(lambda r: r["counts"].update(macs="many")),
    "a non-object env": bad(lambda r: r.update(env="cpu")),
    "a list as env": bad(lambda r: r.update(env=[1, 2])),
    "a 5000-digit integer": bad(lambda r: r["counts"].update(macs=-7)).replace('"macs": -7', '"macs": ' + "9" * 5000),
    "deep nesting": '{"case": ' + "[" * 100_000 + "]" * 100_000 + ', "status": "ok"}',
    "a profile missing a class": bad(lambda r: [r["profile"][k].pop("dense") for k in ("cpu_s", "cpu_s_rounds")]),
    "a profile with all-zero times": bad(
        lambda r: r["profile"].update(
            cpu_s=dict.fromkeys(r["profile"]["cpu_s"], 0.0),
            cpu_s_rounds={k: [0.0, 0.0, 0.0] for k in r["profile"]["cpu_s"]},
        )
    ),
    "batch 0": bad(lambda r: r.update(batch=0)),
    "case batch 0": bad(lambda r: r["case"].update(batch=0)),
}


def write(folder: Path, bad_line: str | None) -> Path:
    return write_results(folder, [record(s) for s in SIZES], [bad_line] if bad_line is not None else [])


def warned_once(err: str, path: Path, line: int) -> None:
    assert "Traceback" not in err, err
    mentions = [w for w in err.splitlines() if f"line {line}" in w]
    assert len(mentions) == 1 and str(path) in mentions[0], err


@pytest.mark.parametrize("name", list(BAD_LINES))
def test_a_bad_value_is_a_warning_with_file_and_line_everywhere(name, tmp_path, capsys):
    good = write(tmp_path / "good", None)
    dirty = write(tmp_path / "dirty", BAD_LINES[name])
    path = dirty / "results.jsonl"
    line = len(SIZES) + 1

    assert cli.main(["report", str(dirty)]) == 0
    warned_once(capsys.readouterr().err, path, line)

    assert cli.main(["compare", str(good), str(dirty)]) == 0
    warned_once(capsys.readouterr().err, path, line)

    assert cli.main(["merge", str(tmp_path / "merged"), str(good), str(dirty)]) == 0
    warned_once(capsys.readouterr().err, path, line)

    argv = ["sweep", "--models", "mixer_s16", "--resolutions", ",".join(map(str, SIZES)), "--patch-sizes", "4"]
    argv += ["--threads", "1", "--batch", "1", "--resume", "--out", str(dirty), "--no-report"]
    assert cli.main(argv) == 0
    warned_once(capsys.readouterr().err, path, line)
