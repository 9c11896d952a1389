"""How the CLI shows a failure: the library's log lines it filters, and the last-resort message (issues 25, 29).

Every CLI failure is one line on stderr and exit 2. The library logs a run's
failure before raising it (for hosts that only watch logs); the CLI prints the
raised error itself, so :class:`LibraryLines` drops that log line. It also
drops the "failed with a transient error ...; retry n/3" lines of
``runs/retry.py`` unless ``-v`` is given: the final error says what failed,
and the retries are a detail of how hard it tried.
"""

from __future__ import annotations

import io
import logging
import os
import sys

#: The exit code when the reader of stdout went away (``… | head``): 128 + SIGPIPE, what the shell reports
#: for a command the closed pipe ended, as for ``yes | head``; quiet, and not 0, since the output was cut.
PIPE_CLOSED = 141


class LibraryLines(logging.Filter):
    """Drops the library's log line of a failure the CLI prints itself (else every failure shows twice),
    and, without -v, its "retry n/3" lines (runs/retry.py): the final error says what failed (issue 29)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.verbose and record.module == "retry":
            return False
        return not getattr(record, "siret_summary_raised", False)


def unexpected_message(command: str, exc: BaseException) -> str:
    """One line for a failure the library did not word: what failed, and what to do about it."""
    what = " ".join(str(exc).split()) or "no message"  # one line, whatever the exception's text holds
    if len(what) > 300:
        what = what[:297] + "..."
    if isinstance(exc, MemoryError):
        hint = "free some memory, or ask for less (--pv, --invitations, --limit)"
    elif isinstance(exc, OSError):
        hint = "check the paths, their folders and permissions, and the free space"
    else:
        hint = "rerun with -v to see where, and report it with that output"
    return (f"`siret-summary {command}` failed unexpectedly ({type(exc).__name__}: {what}); {hint}; "
            "what it was writing is left as it was.")




def closed_stdout() -> int:
    """Stdout's reader went away (BrokenPipeError): point stdout at the null device, so that nothing more
    (the interpreter's final flush included) fails writing to it, and give :data:`PIPE_CLOSED`."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):  # a host's stdout without a file descriptor
        pass
    return PIPE_CLOSED


def flushed(code: int) -> int:
    """``code``, once stdout is flushed (a closed pipe then raises BrokenPipeError where main() catches it)."""
    sys.stdout.flush()
    return code
