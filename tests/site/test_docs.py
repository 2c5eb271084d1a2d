"""The documentation site: it builds with --strict, its generated parts match the code, its commands run.

- ``mkdocs build --strict`` of the repository's mkdocs.yml, into a temporary folder: a broken
  link, a missing anchor or a page left out of the nav fails it.
- The CLI reference holds every command's ``--help`` output verbatim (it is generated from
  the parsers; this test runs the real command beside it).
- The field tables hold every field of the record types; the results page names every folder
  of results/ with its number of cases (counted here from the JSON lines).
- Every ``$ `` line of a ```` ```console ```` block in README.md and docs/ runs as shown (in bash,
  ``mixerbench`` being this checkout's ``python -m bench``): exit code 0, and the lines shown
  under it, if any, are in its output. Keep such blocks to cheap commands.
- The README stays short and its two set-up commands stay those of .ci/run.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

mkdocs = pytest.importorskip("mkdocs", reason="mkdocs-material is in the dev extra: pip install -e '.[dev]'")


def _text(page: Path) -> str:
    """The text of an HTML page as a reader sees it: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs-site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_site_builds_strict_and_every_page_is_in_it(site):
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix(".html") for p in (ROOT / "docs").rglob("*.md"))
    assert pages and all((site / page).is_file() for page in pages), [p for p in pages if not (site / p).is_file()]
    assert not list(site.rglob("hooks*")), "the hook file is not published"


def test_the_site_loads_nothing_from_the_network(site):
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r"""<(?:script|link|img|iframe)\b[^>]*(?:src|href)=["'](?:https?:)?//""", text), page
        assert "fonts.googleapis" not in text and "unpkg.com" not in text, page


def _help(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="100"),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


def _commands() -> list[str]:
    from bench.cli import COMMANDS

    return [m.rsplit("cmd_", 1)[1] for m in COMMANDS]


def test_the_cli_reference_is_every_commands_help_verbatim(site):
    page = _text(site / "reference" / "cli.html")
    assert _help() in page
    for command in _commands():
        assert _help(command) in page, f"mixerbench {command} --help differs from docs/reference/cli.md"


def test_the_field_tables_list_every_field_of_the_record_types(site):
    import dataclasses

    from bench.schema import TYPES as types

    page = _text(site / "reference" / "records.html")
    for cls in types:
        assert re.search(rf"\b{cls.__name__}\b", page), f"no table for {cls.__name__}"
        for field in dataclasses.fields(cls):
            if not field.name.startswith("_") and field.name != "extra":
                assert f"{field.name}" in page, f"{cls.__name__}.{field.name} is missing from the field tables"


def test_the_fits_json_section_is_the_generated_table_of_its_types(site):
    """fits.json's fields are described once, by bench.schema: its section holds every FitRecord, FitCurve and
    FitAttribution field with its JSON type, and only those types (results.jsonl's tables are elsewhere)."""
    from bench import schema

    page = _text(site / "reference" / "records.html")
    section = page[page.index("\nfits.json¶") : page.index("\nflops JSON¶")]
    for name, rows in schema.describe(schema.FITS_FILENAME).items():
        assert name in section
        for field, kind, _ in rows:
            assert re.search(rf"{re.escape(field)}\s+{re.escape(kind)}", section), f"{name}.{field} ({kind})"
    assert "Timing¶" not in section and "\nRecord¶" not in section


def test_the_results_page_has_every_folder_with_its_number_of_cases(site):
    page = _text(site / "results" / "index.html")
    folders = sorted(p.parent for p in (ROOT / "results").glob("*/results.jsonl"))
    assert folders
    for folder in folders:
        lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
        cases = {(json.dumps(r["case"], sort_keys=True), json.dumps(r.get("machine"), sort_keys=True)) for r in lines}
        assert f"results/{folder.name}" in page
        assert re.search(rf"results/{re.escape(folder.name)}[\s¶]+{len(cases)} cases \(", page), folder.name
    assert "load average" not in page


def test_the_results_tables_show_the_recorded_latencies_and_memory():
    """Read results/cpu-quick-v2 as plain JSON here (not with the project's reader) and find its figures."""
    from bench.site import docs

    folder = ROOT / "results" / "cpu-quick-v2"
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    by_series: dict[str, list[dict]] = {}
    for r in lines:
        if r["status"] == "ok":
            by_series.setdefault(r["label"], []).append(r)
    rows = [row for row in docs.folder_section(folder) if row.startswith("| ") and " → " in row][1:]  # [0]: header
    assert len(rows) == len(by_series) == 4
    for label, records in by_series.items():
        records.sort(key=lambda r: r["case"]["img_size"])
        (row,) = [row for row in rows if row.startswith(f"| {label} ")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[1]) == len(records)
        shown = [float(v.replace(",", "")) for cell in cells[3:5] for v in cell.split(" → ")]
        recorded = [
            records[0]["time"]["median_s"] * 1e3,
            records[-1]["time"]["median_s"] * 1e3,
            records[0]["memory"]["activation_bytes"] / 2**20,
            records[-1]["memory"]["activation_bytes"] / 2**20,
        ]
        assert shown == pytest.approx(recorded, rel=0.006), label  # three significant figures


# --- commands shown in the docs run as shown -------------------------------------------------

CONSOLE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)


def runnable_commands() -> list[tuple[str, str, list[str]]]:
    """(file, command, expected output lines) for every ``$ `` line of a console block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in CONSOLE.findall(path.read_text()):
            current = None
            for line in block.splitlines():
                if line.startswith("$ "):
                    current = (str(path.relative_to(ROOT)), line[2:], [])
                    found.append(current)
                elif current is not None and line.strip():
                    current[2].append(line)
    return found


def test_the_docs_show_runnable_commands():
    commands = [c for _, c, _ in runnable_commands()]
    assert "mixerbench --help" in commands and "mixerbench list" in commands


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    """A folder with a ``mixerbench`` that is this checkout's ``python -m bench``."""
    folder = tmp_path_factory.mktemp("bin")
    exe = folder / "mixerbench"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bench "$@"\n')
    exe.chmod(0o755)
    return folder


@pytest.mark.parametrize("where, command, expected", runnable_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_command_shown_in_the_docs_runs_as_shown(shim, tmp_path, where, command, expected):
    env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT), COLUMNS="100")
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    output = done.stdout + done.stderr
    for line in expected:
        assert line.rstrip() in output, f"{where}: `{command}` no longer prints {line!r}:\n{output[-2000:]}"
    if not expected:
        assert done.returncode == 0 and done.stdout.strip(), f"{where}: `{command}` failed:\n{output[-2000:]}"


# --- the README ---------------------------------------------------------------------------------


def test_the_readme_is_short_and_its_test_command_is_cis():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest"
    assert test_command in readme and test_command in ci
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/mixerbench sweep" in readme
    assert "load average" not in readme and "COST.md" not in readme
