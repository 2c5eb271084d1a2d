"""Values the schema must reject (issue 19, class 5): each bad line is a one-line warning naming the file
and the line, from report, compare, merge and sweep --resume, never a traceback; the other lines are used."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bench import cli

SIZES = (64, 96, 128)


def case(size: int) -> dict:
    """The case `sweep --models mixer_s16 --resolutions SIZE --patch-sizes 4 --threads 1 --batch 1` runs."""
    return {
        "model": "mixer_s16",
        "img_size": size,
        "patch_size": 4,
        "batch": 1,
        "device": "cpu",
        "dtype": "float32",
        "mode": "infer",
        "overrides": {},
        "channels_last": False,
        "compile": False,
        "threads": 1,
    }


def profile(tokens: int) -> dict:
    classes = {"attention": 0.0, "data_movement": 1e-8, "dense": 4e-9, "norm_elementwise": 1e-9, "token_mixing": 5e-10}
    cpu_s = {k: v * tokens for k, v in classes.items()}
    return {
        "attention_kernel": None,
        "cpu_s": cpu_s,
        "cpu_s_rounds": {k: [v, v, v] for k, v in cpu_s.items()},
        "steps": 3,
        "tensor_peak_bytes_rounds": [4096 * tokens] * 3,
        "work": {
            "attention": 0,
            "data_movement": 0,
            "dense": 1000 * tokens,
            "norm_elementwise": 10 * tokens,
            "token_mixing": 100 * tokens,
        },
    }


def record(size: int) -> dict:
    tokens = (size // 4) ** 2
    seconds = 1e-6 * tokens
    return {
        "schema": 1,
        "case": case(size),
        "label": "mixer",
        "family": "mixer",
        "status": "ok",
        "tokens": tokens,
        "params": 10**6,
        "macs": 1000 * tokens,
        "batch": 1,
        "env": {"device": "cpu", "device_name": "test cpu", "cpu_model": "test cpu", "torch": "x", "torch_threads": 1},
        "roof_flops_per_s": 1e11,
        "time": {
            "median_s": seconds,
            "iqr_s": 0.01 * seconds,
            "mean_s": seconds,
            "runs": 3,
            "number_per_run": 1,
            "batch": 1,
            "warmup": 1,
            "images_per_s": 1 / seconds,
            "times_s": [seconds, seconds * 1.002, seconds * 0.998],
        },
        "memory": {
            "method": "cpu_peak_rss",
            "weights_bytes": 10**6,
            "activation_bytes": 2000 * tokens,
            "peak_bytes": 5 * 10**8,
            "baseline_bytes": 4 * 10**8,
        },
        "mfu": 0.1,
        "profile": profile(tokens),
    }


def bad(change) -> str:
    r = copy.deepcopy(record(160))
    change(r)
    return json.dumps(r)


BAD_LINES = {
    "a string where a number belongs": bad(lambda r: r["time"].update(median_s="fast")),
    "a string as a count": bad(lambda r: r.update(macs="many")),
    "a non-object env": bad(lambda r: r.update(env="cpu")),
    "a list as env": bad(lambda r: r.update(env=[1, 2])),
    "a 5000-digit integer": bad(lambda r: r.update(macs=-7)).replace('"macs": -7', '"macs": ' + "9" * 5000),
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
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(record(s)) for s in SIZES] + ([bad_line] if bad_line is not None else [])
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    return folder


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
