"""SIGINT and SIGTERM recorded while the command line loads, handed over once (issue 28).

Kept apart from siret_summary/cli_entry.py, which installs them and then
imports the command line: the command line imports this module, never that one.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class EarlySignals:
    """SIGINT and SIGTERM recorded while the command line loads; :attr:`stop` is set by the first."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.caught: list[int] = []
        self.previous: dict[int, Any] = {}

    def install(self) -> bool:
        """Take the signals; False where Python cannot (not the main thread): they then keep their handlers."""
        try:
            for sig in _SIGNALS:
                self.previous[sig] = signal.signal(sig, self._record)
        except ValueError:  # signal handlers can only be set from the main thread
            self.restore()
            return False
        return True

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.caught.append(signum)
        self.stop.set()

    def restore(self) -> None:
        """Give each signal back its handler from before :meth:`install`."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def replay(self) -> None:
        """Restore the handlers, then deliver what arrived meanwhile, once each, as if it arrived now."""
        self.restore()
        for sig in dict.fromkeys(self.caught):
            signal.raise_signal(sig)


_pending: EarlySignals | None = None


def hand_over(early: EarlySignals) -> None:
    """Keep ``early`` for the command that :func:`taken` will give it to."""
    global _pending
    _pending = early


def taken() -> EarlySignals | None:
    """This process's early signals, handed over once; None when the command line was not started here."""
    global _pending
    early, _pending = _pending, None
    return early



def parsed(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser``'s arguments, with this process's early signals as ``early_signals`` (for ``watch``).

    A usage error exits (SystemExit) after the early signals are given back.
    """
    early = taken()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        if early is not None:
            early.replay()
        raise
    args.early_signals = early
    return args


def replay_unless_watching(args: argparse.Namespace) -> None:
    """Any command but ``watch``: the early signals given back, as if they arrived now."""
    early: EarlySignals | None = args.early_signals
    if early is not None and args.command != "watch":
        args.early_signals = None
        early.replay()
