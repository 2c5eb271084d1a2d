import os
import signal
import sys


def _interrupted(signum, frame):  # Ctrl-C before the command line is even imported: one line, no traceback
    sys.stderr.write("mixerbench: interrupted\n")
    sys.stderr.flush()
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted)
from bench.cli import console  # noqa: E402  (the handler must come first)

console()
