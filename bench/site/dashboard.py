"""Make ``asv publish``'s site self-contained and put the sweep's scaling report beside it.

asv 0.6 writes an ``index.html`` that loads jQuery, flot (+ plugins), flot-orderbars,
stupidtable, blueimp-md5 and Bootstrap from public CDNs; without internet the page only
says that its external JavaScript failed to load. The same files are published on the
npm registry, so :func:`vendor_assets` fetches pinned package versions with
``npm pack`` into a cache (each tarball checked against the registry's sha512 integrity
pinned in :data:`PACKAGES`), copies the files the page needs under ``vendor/`` and
points the page at them. Where a copied file is byte-identical to what the CDN serves
(checked against the Subresource Integrity hash that asv's page carries), the page keeps
that ``integrity`` attribute, so the browser itself verifies the file; where npm only has
another build of the same release (flot's unminified sources, the stupidtable plugin's
next npm release, see :data:`ASSETS`) the attribute is dropped.

:func:`publish_report` renders a sweep folder's ``report.md`` (and copies its PNG plots)
into ``report/index.html`` of the same site and adds a "Scaling report" link to asv's
navigation bar: one static folder that ``asv preview`` or any static server can serve.
The report's strings come from results files (labels, error messages), so it is rendered
by markdown-it-py with raw HTML off and links limited to http(s), relative paths and
anchors, inside an autoescaped jinja2 page that forbids scripts; the folder is built
beside the old one and swapped in whole. :func:`load_asv_config` reads asv.conf.json
and turns a malformed one into a one-line :class:`DashboardError`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import files
from bench.files import write_text_atomically

# npm tarballs -> the registry's sha512 integrity (``npm view <spec> dist.integrity``).
PACKAGES: dict[str, str] = {
    "jquery@3.3.1": "sha512-Ubldcmxp5np52/ENotGxlLe6aGMvmF4R8S6tZjsP6Knsaxd/xp3Zrh50cG93lR6nPXyUFwzN3ZSOQI0wRJNdGg==",
    "flot@0.8.3": "sha512-xg2otcTJDvS+ERK+my4wxG/ASq90QURXtoM4LhacCq0jQW2jbyjdttbRNqU2cPykrpMvJ6b2uSp6SAgYAzj9tQ==",
    "flot-orderbars@1.0.0": "sha512-Jv51fvzevUjNXEeozpwEKfPjhiZhfiJddv0WHjduUTCmSF+7T5K7C9c9Y1wIVmUhDBv5fLMjgbwKecT0GIKPZA==",
    "stupid-table-plugin@1.1.3": "sha512-2Vk7XouQPxUQPRe9w0Fu7ZZ8kHLK7rDoLMsCgtKxRNJ7f4dSOGvW9CkHsq5wD6QsaEnWoyLBYH3xOEsrK3yWBg==",
    "blueimp-md5@2.19.0": "sha512-DRQrD6gJyy8FbiE4s+bDoXS9hiW3Vbx5uCdwvcCf3zLHL+Iv7LtGHLpr+GZV8rHG8tK766FGYBwRbu8pELTt+w==",
    "bootstrap@3.1.1": "sha512-TAzqS8E/ISpVHP29gYhy+1NSV+FJwApDVQhDfgLYsIuUDJiqJzH2DfORN5tiu+Ie2iBLrzEG34t4Rf465cigqg==",
}


@dataclass(frozen=True)
class Asset:
    """One external file of asv's page and where the same release lies in an npm tarball."""

    url: str  # as asv's index.html writes it
    package: str  # a key of PACKAGES
    member: str  # path inside the tarball (below "package/")
    extra: tuple[str, ...] = ()  # files the asset itself loads by relative path (Bootstrap's fonts)


_FLOT = "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/"
_FONTS = tuple(f"dist/fonts/glyphicons-halflings-regular.{ext}" for ext in ("eot", "svg", "ttf", "woff"))
# The CDN files of asv 0.6's www/index.html. flot's minified files are cdnjs builds of the
# npm sources, so the unminified sources of the same release stand in. stupidtable 1.0.1
# was never published to npm; 1.1.3 is the plugin's next release, with the same
# ``$.fn.stupidtable`` API that asv's summary list and regressions table call.
ASSETS: tuple[Asset, ...] = (
    Asset("https://code.jquery.com/jquery-3.3.1.min.js", "jquery@3.3.1", "dist/jquery.min.js"),
    Asset(_FLOT + "jquery.flot.min.js", "flot@0.8.3", "jquery.flot.js"),
    Asset(_FLOT + "jquery.flot.time.min.js", "flot@0.8.3", "jquery.flot.time.js"),
    Asset(_FLOT + "jquery.flot.selection.min.js", "flot@0.8.3", "jquery.flot.selection.js"),
    Asset(_FLOT + "jquery.flot.categories.min.js", "flot@0.8.3", "jquery.flot.categories.js"),
    Asset(
        "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js",
        "flot-orderbars@1.0.0",
        "js/jquery.flot.orderBars.js",
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js",
        "stupid-table-plugin@1.1.3",
        "stupidtable.min.js",
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js", "blueimp-md5@2.19.0", "js/md5.min.js"
    ),
    Asset(
        "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js",
        "bootstrap@3.1.1",
        "dist/js/bootstrap.min.js",
    ),
    Asset(
        "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css",
        "bootstrap@3.1.1",
        "dist/css/bootstrap.min.css",
        extra=_FONTS,
    ),
)
VENDOR_DIR = "vendor"
REPORT_DIR = "report"
DOCS_DIR = "docs"
_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_EXTERNAL = re.compile(r"""\b(?:src|href)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)


class DashboardError(RuntimeError):
    """The site cannot be made self-contained: npm missing, a tarball that fails its check, an unknown CDN file."""


def tarball_name(spec: str) -> str:
    """npm pack's file name for ``name@version`` (scoped names are not used here)."""
    name, version = spec.rsplit("@", 1)
    return f"{name}-{version}.tgz"


def sri(data: bytes, algorithm: str = "sha512") -> str:
    """A Subresource Integrity / npm integrity string: ``<algorithm>-<base64 digest>``."""
    return f"{algorithm}-" + base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


def matches_integrity(data: bytes, integrity: str) -> bool:
    """True when ``data`` has one of the hashes of an integrity attribute (space-separated list)."""
    for item in integrity.split():
        algorithm = item.split("-", 1)[0]
        if algorithm in ("sha256", "sha384", "sha512") and sri(data, algorithm) == item:
            return True
    return False


def fetch_packages(cache: Path, npm: str = "npm") -> dict[str, Path]:
    """Every tarball of PACKAGES in ``cache``, fetched with ``npm pack`` when missing, each checked.

    A cached tarball that fails its integrity check is an error, never silently refetched.
    """
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for spec, integrity in PACKAGES.items():
        path = cache / tarball_name(spec)
        if not path.exists():
            if shutil.which(npm) is None:
                raise DashboardError(
                    f"{path} is not cached and {npm!r} is not on PATH: install Node.js/npm once "
                    f"(e.g. apt-get install npm), or put `npm pack {spec}`'s tarball there"
                )
            done = subprocess.run(
                [npm, "pack", spec, "--pack-destination", str(cache)],
                capture_output=True,
                encoding="utf-8",
                errors="replace",
                timeout=300,
            )
            if done.returncode != 0 or not path.exists():
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise DashboardError(f"npm pack {spec} failed: {last}")
        if sri(path.read_bytes()) != integrity:
            raise DashboardError(
                f"{path} does not match the registry's integrity {integrity[:20]}...; delete it to fetch again"
            )
        paths[spec] = path
    return paths


def _extract(tarball: Path, member: str, dest: Path) -> bytes:
    with tarfile.open(tarball) as tar:
        handle = tar.extractfile(f"package/{member}")
        if handle is None:
            raise DashboardError(f"{tarball.name} has no file package/{member}")
        data = handle.read()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return data


def _attribute(tag: str, name: str) -> str | None:
    found = re.search(rf"""\b{name}\s*=\s*(["'])(.*?)\1""", tag, re.IGNORECASE | re.DOTALL)
    return None if found is None else found.group(2)


def _drop_attribute(tag: str, name: str) -> str:
    return re.sub(rf"""\s+{name}\s*=\s*(["']).*?\1""", "", tag, flags=re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class VendoredAsset:
    url: str
    local: str  # path relative to the site root
    integrity_kept: bool  # the CDN's SRI hash matched the npm file, so the page still checks it


def vendor_assets(html_dir: Path, cache: Path, npm: str = "npm") -> list[VendoredAsset]:
    """Copy asv's CDN files from npm tarballs into ``html_dir/vendor`` and point every page at them.

    Raises DashboardError when a page loads an external file that ASSETS does not know
    (a newer asv, say): a half-offline site is not left behind silently.
    """
    by_url = {a.url: a for a in ASSETS}
    if not (html_dir / "index.html").exists():
        raise DashboardError(f"{html_dir / 'index.html'} does not exist: run `asv publish` first")
    pages = sorted(html_dir.glob("*.html"))
    for page in pages:  # every external file must be known before anything is fetched or written
        for match in _TAG.finditer(page.read_text(encoding="utf-8")):
            tag = match.group(0)
            url = _attribute(tag, "src") or _attribute(tag, "href")
            if _EXTERNAL.search(tag) and url not in by_url:
                raise DashboardError(f"{page.name} loads {url}, which bench.site.dashboard.ASSETS cannot serve offline")
    tarballs = fetch_packages(cache, npm)
    vendored: dict[str, VendoredAsset] = {}
    rewritten = {}
    for page in pages:
        text = page.read_text(encoding="utf-8")

        def rewrite(match: re.Match) -> str:
            tag = match.group(0)
            url = _attribute(tag, "src") or _attribute(tag, "href")
            if url is None or not _EXTERNAL.search(tag):
                return tag
            asset = by_url[url]
            local = f"{VENDOR_DIR}/{asset.package}/{asset.member}"
            data = _extract(tarballs[asset.package], asset.member, html_dir / local)
            for extra in asset.extra:
                _extract(tarballs[asset.package], extra, html_dir / VENDOR_DIR / asset.package / extra)
            integrity = _attribute(tag, "integrity")
            keep = integrity is not None and matches_integrity(data, integrity)
            vendored[url] = VendoredAsset(url, local, keep)
            tag = tag.replace(url, local)
            if not keep:
                for name in ("integrity", "crossorigin", "referrerpolicy"):
                    tag = _drop_attribute(tag, name)
            return tag

        new = _TAG.sub(rewrite, text)
        left = [m.group(0) for m in _TAG.finditer(new) if _EXTERNAL.search(m.group(0))]
        if left:
            raise DashboardError(f"{page.name} still loads an external file: {left[0]}")
        rewritten[page] = new
    for page, text in rewritten.items():  # write only once every page could be rewritten
        page.write_text(text, encoding="utf-8")
    return list(vendored.values())


# --- the sweep's report -----------------------------------------------------------------

# What a link or image in the report may point at: http(s) or no scheme at all (a relative
# path, a "#" anchor, "//host/..."). Anything else (javascript:, data:, vbscript:, file:...)
# is left as plain text by markdown-it.
SAFE_SCHEMES = frozenset({"http", "https"})
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):", re.IGNORECASE)
_IGNORED_BY_BROWSERS = re.compile(r"[\x00-\x20\x7f]")  # URL parsers strip or skip these


def safe_link(url: str) -> bool:
    """True for a link target the report may keep: an http(s) URL, a relative path or a ``#`` anchor.

    ``url`` is markdown-it's normalised destination (entities decoded, then percent-encoded).
    Control characters and spaces are dropped before the scheme is read, as a browser would.
    """
    scheme = _SCHEME.match(_IGNORED_BY_BROWSERS.sub("", url))
    return scheme is None or scheme.group(1).lower() in SAFE_SCHEMES


def markdown_renderer():
    """markdown-it-py's CommonMark preset plus pipe tables; raw HTML off, links limited by :func:`safe_link`."""
    from markdown_it import MarkdownIt

    class SafeLinks(MarkdownIt):
        def validateLink(self, url: str) -> bool:
            return safe_link(url)

    return SafeLinks("commonmark", {"html": False}).enable("table")


def render_report(markdown: str, sweep: str, bootstrap_css: str) -> str:
    """The report page: ``markdown`` rendered by :func:`markdown_renderer` inside an autoescaped jinja2 shell.

    ``sweep`` (the sweep folder's name) is escaped by the template; the body is markdown-it's
    output, which escapes every text and attribute itself. The page carries no script and a
    Content-Security-Policy that forbids scripts, so a string that slips through still cannot run,
    and allows images, styles and fonts from the site itself only (the page works offline and
    loads nothing from elsewhere, a remote image in the Markdown included).
    """
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    body = Markup(markdown_renderer().render(markdown))  # noqa: S704 -- markdown-it escapes, html is off
    return env.from_string(_REPORT_TEMPLATE).render(sweep=sweep, bootstrap_css=bootstrap_css, body=body, docs=DOCS_DIR)


_REPORT_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'; font-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'">
<title>mixerbench scaling report: {{ sweep }}</title>
<link rel="stylesheet" href="../{{ bootstrap_css }}">
<link rel="shortcut icon" href="../swallow.ico">
<style>
body { padding: 1em 2em; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: 2px 6px; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
</style>
</head>
<body>
<p><a href="../index.html">&larr; asv dashboard</a> &middot; <a href="../{{ docs }}/index.html">docs</a> &middot;
sweep <code>{{ sweep }}</code> &middot; source: <a href="report.md">report.md</a></p>
{{ body }}
</body>
</html>
"""
NAV_LINK = f'<li><a href="{REPORT_DIR}/index.html">Scaling report</a></li>'
DOCS_NAV_LINK = f'<li><a href="{DOCS_DIR}/index.html">Docs</a></li>'
_STAGING = ".report-new-"  # siblings of report/ while it is built and swapped in
_RETIRED = ".report-old-"


def _with_nav_link(index: Path, link: str = NAV_LINK) -> str | None:
    """asv's index.html with ``link`` (the "Scaling report" item) added, or None when it is already there."""
    page = index.read_text(encoding="utf-8")
    if link in page:
        return None
    anchor = '<li id="nav-li-regressions">'
    if anchor not in page:
        raise DashboardError(f"{index} has no navigation item {anchor!r} to put the link after")
    end = page.index("</li>", page.index(anchor)) + len("</li>")
    return page[:end] + "\n\t" + link + page[end:]


def _build_report_dir(report_dir: Path, dest: Path) -> None:
    """Write the report page, report.md and the PNG plots into the empty folder ``dest``."""
    source = report_dir / "report.md"
    try:  # regular files only: a symlink planted in the folder is not followed into the site (bench.files)
        for png in sorted(report_dir.glob("*.png")):
            (dest / png.name).write_bytes(files.read_bytes(png))
        markdown = files.read_text(source, encoding="utf-8")
    except files.UnsafeFile as exc:
        raise DashboardError(str(exc)) from None
    (dest / "report.md").write_text(markdown, encoding="utf-8")
    css = next(f"{VENDOR_DIR}/{a.package}/{a.member}" for a in ASSETS if a.member.endswith("bootstrap.min.css"))
    name = report_dir.resolve().name
    (dest / "index.html").write_text(render_report(markdown, name, css), encoding="utf-8")


def _swap_in(new: Path, dest: Path) -> None:
    """Make ``new`` the folder ``dest``: the old one is renamed aside, then removed once ``new`` is in place."""
    if not dest.exists():
        os.replace(new, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=_RETIRED, dir=dest.parent))
    os.rmdir(old)  # only the unique name is wanted: rename() needs the target absent
    os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(old, dest)  # put the previous report back
        raise
    shutil.rmtree(old, ignore_errors=True)


def publish_report(report_dir: Path, html_dir: Path) -> Path:
    """Render ``report_dir/report.md`` with its PNGs into ``html_dir/report/`` and link it from asv's page.

    The new folder is built beside the old one (``.report-new-*``) and swapped in by renaming
    only when complete, so an error while publishing leaves the previous report as it was.
    asv's index.html is rewritten (atomically) only after the swap.
    """
    source = report_dir / "report.md"
    if not source.is_file():
        raise DashboardError(f"{source} does not exist: write it with `mixerbench report {report_dir}`")
    index = html_dir / "index.html"
    if not index.exists():
        raise DashboardError(f"{index} does not exist: run `asv publish` first")
    new_index = _with_nav_link(index)  # checked before anything is written
    for stale in [*html_dir.glob(_STAGING + "*"), *html_dir.glob(_RETIRED + "*")]:  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    dest = html_dir / REPORT_DIR
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=html_dir))
    try:
        staging.chmod(0o755)  # mkdtemp makes it 0700; a static server must be able to read it
        _build_report_dir(report_dir, staging)
        _swap_in(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if new_index is not None:
        write_text_atomically(index, new_index)
    return dest / "index.html"


# --- the documentation site ----------------------------------------------------------------


def build_docs(config: Path, dest: Path) -> None:
    """``mkdocs build --strict`` of ``config`` (an mkdocs.yml) into the folder ``dest``.

    Any warning (a broken link, a page missing from the nav) fails the build: DashboardError.
    """
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # material's banner about its successor
    try:
        from mkdocs import exceptions
        from mkdocs.commands.build import build
        from mkdocs.config import load_config
    except ImportError:
        raise DashboardError("mkdocs is not installed: pip install -e '.[dev]'") from None
    try:
        loaded = load_config(config_file=str(config), site_dir=str(dest), strict=True)
        loaded["extra"]["beside_dashboard"] = True  # docs/hooks.py: site:dashboard and site:report point one level up
        build(loaded)
    except (exceptions.MkDocsException, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DashboardError(f"mkdocs build of {config} failed: {reason}") from None


def publish_docs(config: Path, html_dir: Path) -> Path:
    """Build the docs of ``config`` into ``html_dir/docs/`` and link them from asv's page ("Docs").

    Like the report, the folder is built beside the old one and swapped in whole, so a failed
    build leaves the previous docs in place; asv's index.html is rewritten only after the swap.
    """
    if not config.is_file():
        raise DashboardError(f"{config} does not exist: pass the documentation's mkdocs.yml")
    index = html_dir / "index.html"
    if not index.exists():
        raise DashboardError(f"{index} does not exist: run `asv publish` first")
    new_index = _with_nav_link(index, DOCS_NAV_LINK)
    for stale in html_dir.glob(".docs-new-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".docs-new-", dir=html_dir))
    try:
        staging.chmod(0o755)
        build_docs(config, staging)
        _swap_in(staging, html_dir / DOCS_DIR)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if new_index is not None:
        write_text_atomically(index, new_index)
    return html_dir / DOCS_DIR / "index.html"


# --- asv's configuration and `asv publish` ------------------------------------------------


CONFIG_BYTES = 1 << 20  # an asv.conf.json larger than 1 MiB is refused unread
CONFIG_DEPTH = 64  # and one nested deeper than this (asv's own configuration nests four levels at most)


@dataclass(frozen=True)
class AsvConfig:
    """The parts of an asv.conf.json that the dashboard needs, paths resolved against the config's folder."""

    path: Path
    html_dir: Path  # absolute, ".." resolved, but not through a symbolic link (one there is refused, not followed)
    results_dir: Path
    repo: Path | None = None  # the repository, when "repo" is a local folder (not a URL)


def load_asv_config(config: Path) -> AsvConfig:
    """Read ``config`` as asv does (JSON with // comments) and check what ``asv publish`` needs.

    Raises DashboardError, with a one-line message, for a file that is not JSON, not an
    object, lacks ``version`` (1) or ``repo``, or has a non-string ``html_dir``/``results_dir``.
    Relative directories are relative to the config's folder, where asv runs.
    """
    from asv import util

    from bench import schema

    try:  # bounded before asv reads it: its size (read up to the bound) and its nesting
        with open(config, "rb") as f:
            raw = f.read(CONFIG_BYTES + 1)
        if len(raw) > CONFIG_BYTES:
            raise ValueError(f"larger than {CONFIG_BYTES:,} bytes")
        schema.check_nesting(raw.decode("utf-8"), CONFIG_DEPTH)
        data = util.load_json(str(config), js_comments=True)
    except (util.UserError, ValueError, TypeError, OSError, RecursionError) as exc:
        raise DashboardError(f"{config} cannot be read as JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise DashboardError(f"{config} must hold a JSON object, not {type(data).__name__}")
    missing = [key for key in ("version", "repo") if key not in data]
    if missing:
        raise DashboardError(
            f'{config} has no {" or ".join(repr(k) for k in missing)} (asv needs "version": 1 and "repo")'
        )
    if data["version"] != 1 or isinstance(data["version"], bool):
        raise DashboardError(f'{config} has "version": {json.dumps(data["version"])}; asv 0.6 reads version 1')
    if not isinstance(data["repo"], str) or not data["repo"]:
        raise DashboardError(f'{config}: "repo" must be a non-empty string, not {json.dumps(data["repo"])}')
    dirs = {}
    for key, default in (("html_dir", "html"), ("results_dir", "results")):
        value = data.get(key, default)
        if not isinstance(value, str) or not value:
            raise DashboardError(f"{config}: {key!r} must be a non-empty string, not {json.dumps(value)}")
        dirs[key] = Path(os.path.abspath(config.parent / value))
    repo = config.parent / data["repo"]
    return AsvConfig(config, repo=repo.resolve() if "://" not in data["repo"] and repo.is_dir() else None, **dirs)


def run_asv_publish(config: Path, extra: list[str] | None = None, html_dir: Path | None = None) -> None:
    """``asv publish`` for ``config``, run in the config's folder (as asv expects); into ``html_dir`` when given
    (asv deletes that folder first), else into the config's html_dir."""
    where = ["--html-dir", str(html_dir)] if html_dir is not None else []
    done = subprocess.run(
        [sys.executable, "-m", "asv", "publish", "--config", str(config.resolve()), *where, *(extra or [])],
        cwd=config.parent,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    if done.returncode != 0:
        lines = [line.strip(" ·") for line in (done.stderr or done.stdout).splitlines() if line.strip(" ·")]
        raise DashboardError(f"asv publish failed ({done.returncode}): {' '.join(lines[-3:]) or 'no output'}")


# --- the whole site, built beside the published one and swapped in ------------------------------

SITE_MARK = ".mixerbench-dashboard"  # in each staging or retired folder this module makes (and nothing else)
_MARK_TEXT = "a folder of `mixerbench dashboard` while it builds or replaces a site; the next run removes it\n"
_LEFTOVERS = (".report-new-*", ".report-old-*", ".docs-new-*", ".*.tmp")  # left in a site by a killed older run


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_html_dir(config: AsvConfig) -> None:
    """Refuse, before any work, an html_dir that publishing would destroy or write through.

    `asv publish` deletes html_dir before it writes, and the dashboard replaces it whole:
    an html_dir that is a symbolic link, that holds (or is) the config's folder or the
    repository, or that holds, is or lies inside results_dir is a DashboardError (one line).
    """
    html = config.html_dir
    if html.is_symlink():
        raise DashboardError(f"html_dir {html} is a symbolic link; give the real folder in {config.path}")
    real = html.resolve()
    guarded = [("the folder of " + str(config.path), config.path.resolve().parent)]
    if config.repo is not None:
        guarded.append(("the repository", config.repo))
    for what, folder in guarded:
        if _inside(folder, real):
            raise DashboardError(
                f"html_dir {html} holds {what}, and publishing deletes html_dir first; choose a folder of its own"
            )
    results = config.results_dir.resolve()
    if _inside(results, real) or _inside(real, results):
        raise DashboardError(
            f"html_dir {html} overlaps results_dir {config.results_dir}, and publishing deletes html_dir first; "
            "keep them apart"
        )


def _is_ours(folder: Path) -> bool:
    """A real folder (not a link) holding the regular file SITE_MARK: made by :func:`staged_site`."""
    import stat as stat_

    try:
        return stat_.S_ISDIR(os.lstat(folder).st_mode) and stat_.S_ISREG(os.lstat(folder / SITE_MARK).st_mode)
    except OSError:
        return False


def _prefix(html_dir: Path, kind: str) -> str:
    return f".{html_dir.name}.mixerbench-{kind}-"


def clean_leftovers(html_dir: Path) -> list[Path]:
    """Remove what a killed run left beside ``html_dir``: its staging and retired folders, found by name and mark.

    Only folders named ``.<html_dir>.mixerbench-new-*`` / ``-old-*`` that hold :data:`SITE_MARK`
    are removed (an empty one of that name too); anything else is left alone. A site retired
    when the run was killed before the new one was moved in is first put back as ``html_dir``.
    Returns what was removed.
    """
    parent = html_dir.parent
    if not parent.is_dir():
        return []
    removed = []
    for kind in ("old", "new"):  # an old site first: it may have to go back in place
        for entry in sorted(parent.glob(_prefix(html_dir, kind) + "*")):
            if not _is_ours(entry):
                try:
                    entry.rmdir()  # killed between making it and marking it: empty
                    removed.append(entry)
                except OSError:
                    pass
                continue
            if kind == "old" and not os.path.lexists(html_dir) and (entry / "site").is_dir():
                os.rename(entry / "site", html_dir)
            shutil.rmtree(entry)
            removed.append(entry)
    return removed


def _marked_folder(html_dir: Path, kind: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=_prefix(html_dir, kind), dir=html_dir.parent))
    (folder / SITE_MARK).write_text(_MARK_TEXT, encoding="utf-8")
    return folder


def _copy_site(html_dir: Path, dest: Path) -> None:
    """Copy the published site ``html_dir`` to ``dest``; a symbolic link in it is refused, never followed."""
    for root, dirs, names in os.walk(html_dir):
        for name in dirs + names:
            if os.path.islink(os.path.join(root, name)):
                raise DashboardError(
                    f"{os.path.join(root, name)} is a symbolic link; the dashboard does not publish links"
                )
    shutil.copytree(html_dir, dest, ignore=shutil.ignore_patterns(*_LEFTOVERS))


def _swap_site(site: Path, html_dir: Path) -> None:
    """Make ``site`` the folder ``html_dir`` by renaming; the old site is moved aside first, then removed."""
    if not os.path.lexists(html_dir):
        os.rename(site, html_dir)
        return
    retired = _marked_folder(html_dir, "old")
    os.rename(html_dir, retired / "site")
    try:
        os.rename(site, html_dir)
    except BaseException:
        os.rename(retired / "site", html_dir)  # put the previous site back
        raise
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def staged_site(html_dir: Path, copy_existing: bool = False) -> Iterator[Path]:
    """A new folder beside ``html_dir`` to build the whole site in; swapped in whole when the block succeeds.

    Leftovers of a killed run are removed first (:func:`clean_leftovers`). With
    ``copy_existing`` the block starts from a copy of the published site (``--no-publish``).
    Whatever fails or is interrupted, ``html_dir`` stays as it was and the staging folder is
    removed; after SIGKILL the next run removes it.
    """
    clean_leftovers(html_dir)
    container = _marked_folder(html_dir, "new")
    site = container / "site"
    try:
        if copy_existing:
            _copy_site(html_dir, site)
        yield site
        _swap_site(site, html_dir)
    finally:
        shutil.rmtree(container, ignore_errors=True)


@dataclass(frozen=True)
class Published:
    """What :func:`publish_site` made (paths inside the published html_dir)."""

    index: Path
    vendored: list[VendoredAsset]
    docs: Path | None
    report: Path | None


def publish_site(
    config: AsvConfig,
    cache: Path,
    *,
    publish: bool = True,
    docs: Path | None = None,
    report: Path | None = None,
    show=None,
) -> Published:
    """The whole dashboard: `asv publish` (unless not ``publish``), offline assets, docs and report, built beside
    html_dir and swapped in whole (:func:`staged_site`); html_dir is checked first (:func:`check_html_dir`).

    ``show(done, total, step)`` is called before each step. ``docs`` (an mkdocs.yml) is run
    as mkdocs runs it: its hooks and plugins are Python code.
    """
    show = show or (lambda done, total, item: None)
    check_html_dir(config)
    html_dir = config.html_dir
    if not publish and not (html_dir / "index.html").is_file():
        raise DashboardError(f"{html_dir / 'index.html'} does not exist: run `asv publish` first")
    with staged_site(html_dir, copy_existing=not publish) as site:
        if publish:
            show(0, 4, "asv publish")
            run_asv_publish(config.path, html_dir=site)
        show(1, 4, "JavaScript assets from npm")
        vendored = vendor_assets(site, cache)
        show(2, 4, "documentation")
        if docs is not None:
            publish_docs(docs, site)
        show(3, 4, "scaling report")
        if report is not None:
            publish_report(report, site)
    show(4, 4, "done")
    return Published(
        html_dir / "index.html",
        vendored,
        html_dir / DOCS_DIR / "index.html" if docs is not None else None,
        html_dir / REPORT_DIR / "index.html" if report is not None else None,
    )
