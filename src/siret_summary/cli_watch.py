"""``siret-summary watch``: keep the summary fresh until Ctrl-C or SIGTERM (issue 28).

One French line per run, per gap and per failure, flushed at once (a service
manager's journal reads them as they come). Ctrl-C and SIGTERM set the
watcher's stop: a running rebuild is cancelled cleanly and the command exits 0.
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
from collections.abc import Callable
from typing import Any

from siret_summary.cli_config import add_config_flags, config_from, settings, shown, source_from
from siret_summary.live import LiveStatus, watch


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0; give a number of seconds such as 1 or 0.5")
    return value


def _hour(status: LiveStatus) -> str:
    finished = status.last_run_finished
    return "" if finished is None else finished.astimezone().strftime("%H:%M:%S")


class Lines:
    """Turns the watcher's statuses into one line per run end, gap and failure."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.finished: Any = None
        self.gaps = 0
        self.failures = 0
        self.checks = 0

    def __call__(self, status: LiveStatus) -> None:
        if status.gaps > self.gaps:
            self.gaps = status.gaps
            self.write(f"signal perdu ({status.last_gap}) ; reconnexion, puis relecture complète des sources")
        if status.failures > self.failures:
            retry = status.next_retry_seconds or 0.0
            self.write(f"échec de la reconstruction ({status.failures} de suite) : {status.last_error} ; "
                       f"nouvel essai dans {retry:.0f} s")  # fmt: skip
        self.failures = status.failures
        if status.last_run_finished is not None and status.last_run_finished != self.finished:
            self.finished = status.last_run_finished
            state = "à jour" if status.up_to_date else "des changements ont pu arriver pendant : une autre suit"
            if status.checks > self.checks:  # the safety net's check run (live/safety_net.py), not a rebuild
                self.write(f"{_hour(status)} vérification n° {status.checks} terminée ({state})")
            else:
                self.write(f"{_hour(status)} reconstruction n° {status.runs} terminée ({state})")
        self.checks = status.checks


def _watch(args: argparse.Namespace) -> int:
    source = source_from(args)
    target = args.target or settings(args).get("target")  # else the source
    early = getattr(args, "early_signals", None)  # cli_entry.py: taken before the heavy imports, perhaps already set
    stop = threading.Event() if early is None else early.stop
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    if early is not None:
        previous.update(early.previous)  # restored at the end: the handlers from before cli_entry's
    try:
        print(f"surveillance de {shown(source)} (cible : {shown(target or source)}) ; Ctrl-C pour arrêter",
              flush=True)  # fmt: skip
        lines = Lines(lambda line: print(line, flush=True))
        watch(source, target, config=config_from(args), stop=stop, on_status=lines, max_delay=args.max_delay)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("surveillance arrêtée", flush=True)
    return 0


def add_watch_command(command: Callable[[str, str, Any], argparse.ArgumentParser],
                      source_flag: Callable[[argparse.ArgumentParser], None]) -> None:
    """``watch --source URI [--target URI] [--max-delay S]`` and the settings flags."""
    p = command("watch", "rebuild the summary after each committed change of the sources, until Ctrl-C", _watch)
    source_flag(p)
    p.add_argument("--target", default=None, help="database to write (default: the --config file's, else the source)")
    p.add_argument("--max-delay", type=_seconds, default=1.0,
                   help="seconds after a change is seen before its rebuild starts, at most (default 1)")
    add_config_flags(p)
