"""mkdocs hooks: the generated parts of the pages, filled in at build time (see bench/site/docs.py).

A page asks for a part with a marker on a line of its own:

    <!-- generated: cli -->       every command's --help, from bench.cli's argparse parser
    <!-- generated: schema FILE -->  the field tables of FILE (results.jsonl, ..., predict.json), from
                                     the schema module (bench.schema.describe(FILE))
    <!-- generated: results -->   the tables of every folder in results/, read with the project's readers
    <!-- generated: changelog --> CHANGELOG.md

Links to the rest of the published site (the asv dashboard and the scaling report) are written
``site:dashboard`` and ``site:report`` in pages and in the nav, and turned into relative links
by these hooks, after mkdocs has validated the links it knows. Where they point depends on the build:

- published by ``mixerbench dashboard --docs`` (it sets ``extra.beside_dashboard`` in the
  config it builds): the dashboard and the report one level above the docs;
- a plain ``mkdocs build`` or ``mkdocs serve``, which has neither: the sections of
  guide/reading.md that say what they are and how to publish them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the hooks import bench from this checkout, installed or not
    sys.path.insert(0, str(ROOT))

from bench.site import docs as generate  # noqa: E402

MARKER = re.compile(r"^<!-- generated: (\w+)(?: ([\w. -]+?))? -->$", re.MULTILINE)
RESULTS = ROOT / "results"
RESULTS_URL = "results"  # where the results page's plots are published (beside results/index.md)
SITE_LINKS = {"site:dashboard": "index.html", "site:report": "report/index.html"}  # published: one level up
LOCAL_LINKS = {"site:dashboard": "guide/reading.html#the-dashboard", "site:report": "guide/reading.html#the-report"}


def _part(name: str, argument: str | None = None) -> str:
    if name == "schema":
        from bench import schema

        if argument not in schema.FILES:
            raise ValueError(f"generated: schema needs one of {', '.join(schema.FILES)}, got {argument!r}")
        return generate.schema_tables(level=3, file=argument)
    if argument is not None:
        raise ValueError(f"generated: {name} takes no argument, got {argument!r}")
    if name == "cli":
        from bench.cli import build_parser

        return generate.cli_reference(build_parser())
    if name == "results":
        return generate.results_tables(RESULTS, image_prefix="")
    if name == "changelog":  # CHANGELOG.md at the root, its title left out
        return (ROOT / "CHANGELOG.md").read_text().split("\n", 1)[1]
    raise ValueError(f"unknown generated part {name!r} (known: cli, schema FILE, results, changelog)")


def on_files(files, config):
    """Publish the plots the results page shows, straight from results/ (never copied into docs/)."""
    from mkdocs.structure.files import File

    for folder in generate.result_folders(RESULTS):
        for png in generate.shown_plots(folder):
            files.append(File.generated(config, f"{RESULTS_URL}/{folder.name}/{png}", abs_src_path=str(folder / png)))
    return files


def on_page_markdown(markdown, page, config, files):
    return MARKER.sub(lambda m: _part(m.group(1), m.group(2)), markdown)


def _site_links(output: str, up: str, config) -> str:
    """``site:dashboard`` / ``site:report`` -> links relative to a page ``up`` (``../`` per level) from the docs' root."""
    published = bool(config["extra"].get("beside_dashboard"))
    for link in SITE_LINKS:
        target = "../" + SITE_LINKS[link] if published else LOCAL_LINKS[link]
        output = output.replace(f'href="{link}"', f'href="{up}{target}"')
    return output


# Sphinx cross-reference roles in the docstrings that reference/api.md shows: mkdocstrings renders
# :class:`Case` as ":class:" and the code; keep the code.
SPHINX_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|obj|exc):(?=<code>)")


def on_post_page(output, page, config):
    output = SPHINX_ROLE.sub("", output)
    depth = page.url.count("/") if not config["use_directory_urls"] else len(page.url.strip("/").split("/"))
    if page.url in ("", "index.html"):
        depth = 0
    return _site_links(output, "../" * depth, config)


def on_post_template(output_content, template_name, config):
    """404.html is rendered from a template, not a page; its links are root-relative."""
    return _site_links(output_content, "/", config) if template_name == "404.html" else output_content
