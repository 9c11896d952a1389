"""The CLI's live progress: a rich bar on a terminal, else one line per stage (SPEC §8).

Both are ``on_status`` callbacks of :func:`siret_summary.run`: they receive the
status dict (``{"status": ..., "progress": {"stage": ..., "percent": ...}}``)
and print; neither raises on a percent that is not a number.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

STAGE_LABELS = {"pending": "starting", "read": "reading", "compute": "computing", "samples": "sampling",
                "write": "writing", "done": "done"}


def percent_of(value: Any) -> float:
    """A progress percent as a number: 0 for NULL or anything that is not one (a damaged record)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return 0.0
    return float(value)



class StageLines:
    """Fallback progress: one line per stage as the run enters it."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.stage: str | None = None

    def __enter__(self) -> StageLines:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __call__(self, state: dict[str, Any]) -> None:
        stage = state["progress"]["stage"]
        if state["status"] == "running" and stage != self.stage and stage in STAGE_LABELS:
            self.stage = stage
            line = f"{STAGE_LABELS[stage]:<10} {percent_of(state['progress']['percent']):5.1f} %"
            print(line, file=self.stream, flush=True)


class RichBar:
    """A rich progress bar whose description is the current stage."""

    def __init__(self, console: Any) -> None:
        # Lazy: rich is the optional [cli] extra (given a console, it is installed).
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.task = self.progress.add_task("starting", total=100)

    def __enter__(self) -> RichBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, state: dict[str, Any]) -> None:
        stage = state["progress"]["stage"]
        label = STAGE_LABELS.get(stage, stage) if state["status"] in ("running", "completed") else state["status"]
        self.progress.update(self.task, completed=percent_of(state["progress"]["percent"]), description=label)


def rich_console(stderr: bool) -> Any:
    """A rich console when rich is importable, else None."""
    try:
        # Lazy: rich is the optional [cli] extra; without it, plain lines.
        from rich.console import Console
    except ImportError:
        return None

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich exits 1 (the CLI's "cancelled"): main() answers 141 instead
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "the output's reader went away")

    return _Console(stderr=stderr)


def progress_display(enabled: bool = True, *, piped: bool = True) -> Any:
    """The progress reporter for a run: a rich bar on a terminal, stage lines otherwise.

    ``piped=False`` (``export``, ``rejects``): nothing when stderr is not a
    terminal, so a script's stderr holds only a failure's one line (issue 25).
    """
    console = rich_console(stderr=True) if enabled else None
    if console is not None and console.is_terminal:
        return RichBar(console)
    if not enabled or not (piped or _stderr_is_terminal()):
        return _Silent()
    return StageLines()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


class Steps:
    """Drives a progress display by hand for a command that is not a run (``export``, ``rejects``).

    ``step("read", 0.0)`` shows the stage it enters, as a run's ``on_status``
    would; :meth:`done` completes the bar.
    """

    def __init__(self, show: Any) -> None:
        self.show = show

    def __call__(self, stage: str, percent: float) -> None:
        self.show({"status": "running", "progress": {"stage": stage, "percent": percent}})

    def done(self) -> None:
        self.show({"status": "completed", "progress": {"stage": "done", "percent": 100.0}})


class _Silent(StageLines):
    def __call__(self, state: dict[str, Any]) -> None:
        pass
