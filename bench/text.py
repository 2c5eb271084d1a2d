"""Text from results files, made safe where it meets a terminal, Markdown or a matplotlib label.

A label, an ``env`` field or an error message in ``results.jsonl`` is whatever the file
holds: it can carry terminal escape sequences (``ESC ] 0 ; ... BEL`` retitles the window,
``ESC [ 2 J`` clears it), Markdown that forges headings or table rows, or ``$...$`` that
matplotlib reads as mathtext (and fails to parse). Every place where such text leaves the
program goes through one function here:

- :func:`terminal`: control characters (C0, DEL, C1) and the Unicode format controls that
  reorder or hide text (bidirectional overrides, zero-width characters) are shown escaped,
  as Python writes them (``\\x1b``, ``\\u202e``); :class:`TerminalStream` applies it to
  everything the command line prints.
- :func:`markdown`: the same escaping (line breaks included), then a backslash before each
  character that Markdown or a pipe table reads as syntax (CommonMark lets any ASCII
  punctuation be backslash-escaped), so the text renders as itself, inside one cell.
- :func:`mathtext`: ``$`` escaped, so matplotlib draws the label as plain text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TextIO

# Unicode format characters that change how the text around them is shown (category Cf):
# bidirectional embeddings, overrides and isolates, marks, zero-width characters.
_FORMAT_CONTROLS = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
)
# What lets inline text make structure: pipes (table cells), brackets and "!" (links, images),
# angle brackets (autolinks, raw HTML), "#" (a heading inside a list item), code spans,
# emphasis, entities, and the backslash itself. "_" and "()" stay: they cannot make
# structure on their own and model names are full of them.
_MARKDOWN_SYNTAX = frozenset("\\`*[]<>#!|~&")
_LIST_START = re.compile(r"^(?:[-+]|\d{1,9}[.)])(?=\s)")  # would start a (nested) list item


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    return ch in _FORMAT_CONTROLS or unicodedata.category(ch) == "Cc"


def terminal(text: object, keep: str = "") -> str:
    """``text`` with every control character (except those in ``keep``) shown escaped: one harmless line."""
    text = str(text)
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(_escaped(ch) if _unsafe(ch) and ch not in keep else ch for ch in text)


def markdown(text: object) -> str:
    """``text`` as literal Markdown inline text: control characters escaped, syntax characters backslashed.

    The result stays on one line and inside one table cell, makes no link, image, heading,
    list item or HTML, and renders (markdown-it, GitHub) as the original text.
    """
    out = "".join("\\" + ch if ch in _MARKDOWN_SYNTAX else ch for ch in terminal(text))
    start = _LIST_START.match(out)
    if start:
        out = out[: start.end() - 1] + "\\" + out[start.end() - 1 :]
    return out


def mathtext(text: object) -> str:
    """``text`` for a matplotlib label: ``$`` escaped (no mathtext), control characters escaped."""
    return terminal(text).replace("$", r"\$")


class TerminalStream:
    """A text stream that writes through :func:`terminal` (line breaks and tabs kept).

    The command line wraps ``sys.stdout`` and ``sys.stderr`` in it, so no text it prints,
    from whatever file it came, reaches the terminal as an escape sequence.
    :meth:`write_raw` is for the program's own control characters (a progress line's
    carriage return).
    """

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(terminal(text, keep="\n\t"))
        return len(text)

    def write_raw(self, text: str) -> int:
        return self.stream.write(text)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding, ...
        return getattr(self.stream, name)
