"""The documentation site's generated parts: CLI reference, record schemas, results tables.

``docs/hooks.py`` (an mkdocs hook) replaces markers such as ``<!-- generated: cli -->`` in
the pages with what these functions return, at build time, so nothing here is typed by
hand and nothing drifts:

- :func:`cli_reference`: each command's ``--help`` text, verbatim, from the argparse parser
  (handed in by the hook: the parser belongs to ``bench.cli``, the layer above this one);
- :func:`schema_tables`: the ``results.jsonl`` and ``fits.json`` field tables, from the
  schema module (``bench.schema.describe()``, one table per type written to disk);
- :func:`results_tables`: per folder of ``results/``, what it holds and its verdicts, read
  with the project's own readers and fitted by the same code as ``mixerbench report``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

HELP_COLUMNS = 100  # argparse wraps --help to $COLUMNS; the reference and its test use this width
MiB = 2**20


# --- the CLI reference -------------------------------------------------------------------


def help_text(parser: argparse.ArgumentParser, columns: int = HELP_COLUMNS) -> str:
    """``parser``'s ``--help`` output as a terminal ``columns`` wide prints it (argparse reads $COLUMNS)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        return parser.format_help()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser``, by name, in the order they were added."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def cli_reference(parser: argparse.ArgumentParser, columns: int = HELP_COLUMNS) -> str:
    """Markdown: the program's ``--help``, then one section per command with its ``--help``, verbatim."""
    prog = parser.prog
    parts = [f"## `{prog}`", "", "```text", help_text(parser, columns).rstrip("\n"), "```", ""]
    for name, sub in subcommands(parser).items():
        parts += [f"## `{prog} {name}`", "", "```text", help_text(sub, columns).rstrip("\n"), "```", ""]
    return "\n".join(parts)


# --- record schemas ----------------------------------------------------------------------


def schema_description(file: str | None = None) -> dict[str, list[tuple[str, str, str]]]:
    """Per type written to disk (only ``file``'s, e.g. "fits.json", when given): (field, JSON type, doc), from
    ``bench.schema.describe()``."""
    from bench import schema

    return {str(name): [(str(f), str(t), str(d)) for f, t, d in rows] for name, rows in schema.describe(file).items()}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def schema_tables(level: int = 3, file: str | None = None) -> str:
    """Markdown: one field table per type of :func:`schema_description` (``file``'s types only, when given)."""
    out = []
    for name, rows in schema_description(file).items():
        out += [f"{'#' * level} `{name}`", "", "| field | JSON type | meaning |", "| --- | --- | --- |"]
        out += [f"| `{field}` | {_cell(kind)} | {_cell(doc)} |" for field, kind, doc in rows]
        out.append("")
    return "\n".join(out)


# --- results tables ----------------------------------------------------------------------


def result_folders(results_dir: Path) -> list[Path]:
    """The sweep folders under ``results_dir`` (those with a results.jsonl), by name."""
    return sorted(p.parent for p in results_dir.glob("*/results.jsonl"))


def peer_files(results_dir: Path) -> list[Path]:
    return sorted(results_dir.glob("*/peers*.jsonl"))


def _num(x: float) -> str:
    """Three significant figures, never an exponent: 0.766, 15.7, 349, 1,620."""
    if abs(x) >= 100:
        return f"{x:,.0f}" if abs(x) < 1000 else f"{float(f'{x:.3g}'):,.0f}"
    return f"{x:.3g}"


SHOWN_PLOTS = ("breakdown.png", "roofline.png", "latency_vs_tokens.png")  # what the results page shows per folder


def shown_plots(folder: Path) -> list[str]:
    """The plots of ``folder`` that the results page shows (the docs site publishes these files)."""
    return [name for name in SHOWN_PLOTS if (folder / name).is_file()]


def folder_section(folder: Path, image_prefix: str | None = None) -> Iterator[str]:
    """Markdown lines for one sweep folder: what ran, where, and the verdicts of its report."""
    from bench.analysis.series import fits_of, latest_per_machine, series_of
    from bench.report import verdicts
    from bench.runs.records import read_results

    raw, problems = read_results(folder / "results.jsonl")
    records = latest_per_machine(raw)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    envs = [r.env for r in records if r.env is not None]
    devices = sorted({e.device_name for e in envs if e.device_name})
    torches = sorted({e.torch for e in envs if e.torch})
    commits = sorted({e.git_commit[:12] for e in envs if e.git_commit})
    yield f"### `results/{folder.name}`"
    yield ""
    yield (
        f"{len(records)} cases ("
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        + f"); device {', '.join(devices) or '-'}; torch {', '.join(torches) or '-'}; "
        + f"harness commit {', '.join(commits) or '-'}."
        + (f" {len(problems)} unreadable line(s) skipped." if problems else "")
    )
    yield ""
    series = series_of(records)
    yield "| series | sizes | x range | ms/step, smallest → largest | activation MiB, smallest → largest |"
    yield "| --- | ---: | --- | --- | --- |"
    for s in series:
        first, last = s.records[0], s.records[-1]
        xs = s.x()
        yield (
            f"| {_cell(s.title)} | {len(s.records)} | {xs[0]:,} .. {xs[-1]:,} {'pixels' if s.axis == 'pixels' else 'tokens'} "
            f"| {_num(first.time.median_s * 1e3)} → {_num(last.time.median_s * 1e3)} "
            f"| {_num(first.memory.activation_bytes / MiB)} → {_num(last.memory.activation_bytes / MiB)} |"
        )
    yield ""
    rows = fits_of(series)
    if any(row.fit is not None for row in rows):
        yield "Verdicts, as `mixerbench report` gives them (see [statistics](../methodology/statistics.md)):"
        yield ""
        yield from verdicts.verdict_table(rows)
        yield ""
    if image_prefix is not None:
        for png in shown_plots(folder):
            yield f"![{folder.name}: {png}]({image_prefix}{folder.name}/{png})"
            yield ""


def peers_section(results_dir: Path) -> Iterator[str]:
    """Markdown: the ours/timm ratio of every peers file (the report's own table)."""
    from bench.report import peers_table
    from bench.runs.records import read_peers

    for path in peer_files(results_dir):
        peers, _ = read_peers(path)
        if not peers:
            continue
        yield f"#### `results/{path.parent.name}/{path.name}`"
        yield ""
        yield from peers_table(peers)
        yield ""


def results_tables(results_dir: Path, image_prefix: str | None = None) -> str:
    """Markdown for every sweep folder and peers file under ``results_dir``."""
    lines: list[str] = []
    for folder in result_folders(results_dir):
        lines += list(folder_section(folder, image_prefix))
    peers = list(peers_section(results_dir))
    if peers:
        lines += ["### Reference models against timm (`--peers`)", ""] + peers
    return "\n".join(lines)
