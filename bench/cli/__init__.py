"""The ``mixerbench`` command line (also ``python -m bench``).

Each sub-command lives in its own module ``bench/cli/cmd_<name>.py`` exposing ``NAME``,
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; list it in ``COMMANDS``.
Command modules parse and print: the work is done by the library layers below
(``bench.measure``, ``bench.analysis``, ``bench.runs``, ``bench.report``,
``bench.experiments``, ``bench.site``), imported inside ``run`` so that ``--help``
never imports torch.
Everything printed goes through :class:`bench.text.TerminalStream`: control characters
from results files (a label's escape sequence) are shown escaped, never sent to the terminal.
Bad input raises :class:`bench.errors.UsageError` (or fails argparse) and becomes one
line on stderr with exit code 2; an OSError (a full disk) one line and exit code 1;
Ctrl-C, from the first instant on, one line and exit code 130; SIGTERM the same with exit code 143.
Printing is best-effort (:mod:`bench.cli.streams`): a broken pipe (``| head -1``) or a closed
standard output (``>&-``) never stops a command or changes its exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TextIO, cast

from bench.cli.args import OneLineParser
from bench.cli.streams import BestEffort, Terminated
from bench.errors import UsageError
from bench.files import UnsafeFile
from bench.text import TerminalStream

COMMANDS = (
    "bench.cli.cmd_list",
    "bench.cli.cmd_flops",
    "bench.cli.cmd_predict",
    "bench.cli.cmd_sweep",
    "bench.cli.cmd_report",
    "bench.cli.cmd_compare",
    "bench.cli.cmd_properties",
    "bench.cli.cmd_shuffle",
    "bench.cli.cmd_dashboard",
    "bench.cli.cmd_merge",
    "bench.cli.cmd_gate",
)


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__

    parser = OneLineParser(
        prog="mixerbench",
        description="MLP-Mixer next to ViT and ResNet: parameters, FLOPs, throughput and memory as resolution and patch count vary.",
    )
    parser.add_argument("--version", action="version", version=f"mixerbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code: 0 done, 1 a failure while working, 2 bad input, 130 interrupted,
    143 terminated (SIGTERM).

    Everything happens inside the handlers, building the parser and parsing too (the
    argument types import torch), so Ctrl-C at any moment is one line and exit code 130,
    and a file that cannot be written (disk full) is one line and exit code 1.
    """
    prog = "mixerbench"
    streams = sys.stdout, sys.stderr
    # text from files: escaped; a reader that went away: dropped, the command goes on
    out, err = (cast(TextIO, BestEffort(stream)) for stream in (sys.stdout, sys.stderr))
    sys.stdout, sys.stderr = TerminalStream(out), TerminalStream(err)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        prog = f"mixerbench {args.command}"
        return args.run(args)
    except (UsageError, UnsafeFile) as exc:  # UnsafeFile: a symlink, FIFO or device inside a folder, refused
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder that cannot be written or read: disk full, file too large, gone
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # best-effort: a reader that went away at the very end changes nothing either
        sys.stdout, sys.stderr = streams


def console() -> None:
    """The ``mixerbench`` program: :func:`main`, then exit with its code.

    After Ctrl-C the process leaves at once (``os._exit``, streams flushed): an import that
    the interrupt cut short (torch, numpy) can otherwise fail again in interpreter shutdown
    and print a traceback, or re-raise the interrupt there. Every record is already on
    disk by then (appended and fsync'ed as it is measured).
    """
    import signal

    from bench.cli import streams

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    sys.unraisablehook = on_unraisable
    streams.reserve_standard_fds()
    code = main()
    if code in (130, 143):
        _leave(code)
    sys.exit(code)


def on_sigint(signum, frame) -> None:
    """Ctrl-C: KeyboardInterrupt as usual (SIGTERM: :class:`Terminated`), except inside an import, where the
    program leaves at once.

    A library's import-time ``try/except`` can swallow the KeyboardInterrupt (the command
    then runs on) or leave a module half-initialised (a traceback follows); measurements
    have not started during imports, so leaving at once loses nothing.
    """
    import signal

    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            terminated = signum == signal.SIGTERM
            if sys.stderr is not None:  # None: started with 2>&-
                sys.stderr.write(f"mixerbench: {'terminated' if terminated else 'interrupted'}\n")
            _leave(143 if terminated else 130)
        frame = frame.f_back
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def on_unraisable(unraisable) -> None:
    """An interrupt that landed where Python swallows exceptions (a weakref callback or ``__del__`` run by the
    garbage collector: Python only prints them) is delivered again a moment later, where it stops the command;
    anything else is reported as Python reports it."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        import os
        import signal
        import threading

        signum = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
        again = threading.Timer(0.05, os.kill, (os.getpid(), signum))
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(unraisable)


def _leave(code: int) -> None:
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # AttributeError: None, a stream closed at start-up
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
