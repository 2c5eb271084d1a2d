"""Reports of merged folders: fits per machine and the "Devices side by side" table; compare and dashboard read them."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from pathlib import Path

import pytest

from bench import cli, report
from bench.analysis.series import fits_of, series_of
from bench.report.devices import devices_table
from bench.runs import records
from helpers import ROOT

RESULTS = ROOT / "results"


def copy(name: str, tmp_path: Path, as_name: str | None = None) -> Path:
    target = tmp_path / (as_name or name)
    target.mkdir(parents=True)
    shutil.copy(RESULTS / name / "results.jsonl", target / "results.jsonl")
    return target


def merged(tmp_path: Path, capsys, *folders: Path) -> Path:
    out = tmp_path / "merged"
    assert cli.main(["merge", str(out), *map(str, folders)]) == 0
    assert f"machines: {len(folders)}" in capsys.readouterr().out
    return out


def rows_of(md: str, heading: str) -> list[list[str]]:
    """The data rows of the first table after ``heading``, as cells."""
    section = md[md.index(heading) :].split("\n\n")
    table = next(block for block in section if block.startswith("|"))
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in table.splitlines()[2:]]


@pytest.fixture(scope="module")
def cpu_and_h200(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("devices")
    out = tmp_path / "merged"
    cli.main(["merge", str(out), str(copy("cpu-quick", tmp_path)), str(copy("h200-paper", tmp_path))])
    assert cli.main(["report", str(out)]) == 0
    return out, (out / "report.md").read_text()


def test_merged_report_fits_each_machine_and_shows_both_devices(cpu_and_h200):
    out, md = cpu_and_h200
    assert "62 cases" in md
    fits = rows_of(md, "## Scaling fits")
    assert {r[0].rsplit(" on ", 1)[1] for r in fits} == {"AMD EPYC", "NVIDIA H200"}  # every fit row names its device
    assert len(fits) == 3 * 10  # 4 CPU series + 6 H200 series, 3 quantities each
    mixer_cpu = [r for r in fits if r[0].startswith("mixer C64 x2") and r[1] == "MACs"]
    assert len(mixer_cpu) == 1 and mixer_cpu[0][0].endswith("on AMD EPYC")

    devices = rows_of(md, "## Devices side by side")
    assert len(devices) == 2
    cpu, gpu = sorted(devices, key=lambda r: "H200" in r[0])
    assert cpu[1] == "cpu: AMD EPYC" and cpu[3] == "-" and cpu[4] == "2.14.1+cu130"
    assert gpu[1] == "cuda: NVIDIA H200" and gpu[2] == "Intel(R) Xeon(R) Processor" and gpu[3] == "NVIDIA H200"
    assert gpu[4] == "2.11.0+cu130"
    header = md[md.index("## Devices side by side") :].split("\n\n")[2].splitlines()[0]
    for words in ("Mixer: latency / act. memory verdict", "ViT: S* from MACs / latency", "ResNet: latency"):
        assert words in header
    assert "ResNet: S*" not in header  # convnets have no tokens
    assert "vit_b16 fused: quadratic / linear" in gpu[7] and "vit_b16 explicit: quadratic / quadratic" in gpu[7]
    # MAC S* = 6 d + ... = 4,645 tokens for ViT-B (closed form, DESIGN.md); the latency S* is a number (b significantly positive)
    assert re.search(r"vit_b16 fused: 4,645 / \d{1,2},\d{3}", gpu[8]), gpu[8]
    assert re.search(r"vit d64 x2 fused: 402 / \d?,?\d{3}", cpu[8]), cpu[
        8
    ]  # 6 d = 384 plus the norms' and head's share
    assert "mixer C64 x2: - / -" in cpu[6]  # linear MACs: no crossover; latency b not significant: none either


def ips(folder: str, label: str) -> dict[int, float]:
    rows = [json.loads(line) for line in (RESULTS / folder / "results.jsonl").read_text().splitlines()]
    return {
        r["case"]["img_size"]: r["time"]["batch"] / r["time"]["median_s"]
        for r in rows
        if r["label"] == label and r["status"] == "ok"
    }


def test_throughput_ratio_is_the_median_at_matched_sizes(cpu_and_h200):
    _, md = cpu_and_h200
    cpu, gpu = sorted(rows_of(md, "## Devices side by side"), key=lambda r: "H200" in r[0])
    for folder, mixer, vit, row in (
        ("h200-paper", "mixer_b16", "vit_b16 fused", gpu),
        ("h200-paper", "mixer_l16", "vit_l16 fused", gpu),
        ("cpu-quick", "mixer C64 x2", "vit d64 x2 fused", cpu),
    ):
        a, b = ips(folder, mixer), ips(folder, vit)
        ratio = statistics.median(a[s] / b[s] for s in a if s in b)
        assert f"{mixer} / {vit}: {ratio:.2f}x ({len(set(a) & set(b))} sizes)" in row[-1]
    assert "explicit" not in gpu[-1]


def test_same_cases_on_two_machines_are_fitted_apart(tmp_path, capsys):
    a = copy("cpu-quick", tmp_path, "a")
    b = tmp_path / "b"
    b.mkdir()
    rows = [json.loads(line) for line in (a / "results.jsonl").read_text().splitlines()]
    for r in rows:  # the same grid on a machine twice as slow
        r["env"]["cpu_model"] = r["env"]["device_name"] = "Slow CPU"
        r["time"] = dict(r["time"], median_s=2 * r["time"]["median_s"], times_s=[2 * t for t in r["time"]["times_s"]])
    (b / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = merged(tmp_path, capsys, a, b)
    found, _ = records.read_results(out / "results.jsonl")
    md, console, _, _ = report.build(out)
    assert "40 cases" in md  # not collapsed by case key
    series = series_of(found)
    assert len(series) == 8 and {s.machine for s in series} == {"AMD EPYC", "Slow CPU"}
    lat = {(s.label, s.machine): f.fit for f in fits_of(series) for s in [f.series] if f.quantity == "latency"}
    fast, slow = lat["mixer C64 x2", "AMD EPYC"], lat["mixer C64 x2", "Slow CPU"]
    assert slow.a == pytest.approx(2 * fast.a) and slow.b == pytest.approx(2 * fast.b)
    assert "mixer C64 x2 (Slow CPU)" in console
    assert len(rows_of(md, "## Devices side by side")) == 2
    assert any(r[0].startswith("vit d64 x2 (Slow CPU)") for r in rows_of(md, "## ViT attention"))


def test_one_machine_has_no_device_section_and_unchanged_series():
    found, _ = records.read_results(RESULTS / "h200-paper" / "results.jsonl")
    assert devices_table(found) == []
    series = series_of(found)
    assert all(s.machine is None and s.legend == s.label and " on " not in s.title for s in series)


def test_two_machines_of_one_name_are_told_apart(tmp_path):
    rows = [json.loads(line) for line in (RESULTS / "cpu-quick" / "results.jsonl").read_text().splitlines()]
    twin = [dict(r, env=dict(r["env"], cpu_count=64)) for r in rows]  # same device name, another machine id
    found = [records.Record.from_json(r) for r in rows + twin]
    lines = devices_table(found)
    names = [line.split(" | ")[0] for line in lines if line.startswith("| AMD EPYC")]
    assert len(names) == 2 and len(set(names)) == 2 and all("[" in n for n in names)


def test_compare_and_dashboard_accept_a_merged_folder(cpu_and_h200, tmp_path, capsys):
    from bench.site import dashboard

    out, _ = cpu_and_h200
    capsys.readouterr()
    assert cli.main(["compare", str(RESULTS / "h200-paper"), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "42 cases compared: 0 worse, 0 better" in printed
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(
        '<html><head></head><body><ul class="nav">\n'
        '<li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li>\n'
        "</ul></body></html>\n"
    )
    page = dashboard.publish_report(out, html_dir).read_text()
    assert "Devices side by side" in page and "NVIDIA H200" in page
