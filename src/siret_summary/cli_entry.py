"""The ``siret-summary`` console script and ``python -m siret_summary``: signals taken from the first instant.

Importing the command line (Polars, Arrow, the drivers) takes about a second.
A SIGTERM from a service manager or a Ctrl-C in that second used to end
``siret-summary watch`` with a traceback or a signal's exit status instead of
its exit 0 (issue 28). This module imports nothing heavy: it records SIGINT and
SIGTERM before the rest of the command line loads, then hands them over
(:func:`taken`): ``watch`` takes them as its stop; any other command gets them
back as if they had arrived then (Python's own behaviour: Ctrl-C interrupts,
SIGTERM ends the process).
"""

from __future__ import annotations

import sys

from siret_summary import cli_early
from siret_summary.cli_early import EarlySignals


def main(argv: list[str] | None = None) -> int:
    """Take SIGINT and SIGTERM, then load and run the command line (siret_summary/cli.py)."""
    early = EarlySignals()
    if early.install():
        cli_early.hand_over(early)
    # Imported here, after the handlers: the heavy import is what this module exists to precede.
    from siret_summary.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
