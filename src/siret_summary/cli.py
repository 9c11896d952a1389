"""Command line: ``siret-summary demo | run | status | cancel``.

``run`` and ``demo`` show a live progress bar (rich, when it is installed and
the output is a terminal; else one line per stage) driven by the run's
``on_status`` callback, then a summary of what the run did. ``status`` prints
the latest run's status JSON (``not_found`` when none ran); ``cancel`` asks
the running rebuild of a target, in any process, to stop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from .config import Config
from .errors import SiretSummaryError
from .runner import MODES, RunResult, cancel, run, status
from .status import TASK_ID

DEMO_PATH = "siret_summary_demo.db"
#: Default target of ``status`` and ``cancel`` when ``--target`` is not given.
TARGET_VARIABLE = "SIRET_SUMMARY_TARGET"
STAGE_LABELS = {"pending": "starting", "read": "reading", "compute": "computing", "write": "writing", "done": "done"}


# ----------------------------------------------------------------------- progress


class StageLines:
    """Fallback progress: one line per stage as the run enters it."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.stage: str | None = None

    def __enter__(self) -> "StageLines":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __call__(self, state: dict[str, Any]) -> None:
        stage = state["progress"]["stage"]
        if state["status"] == "running" and stage != self.stage and stage in STAGE_LABELS:
            self.stage = stage
            print(f"{STAGE_LABELS[stage]:<10} {state['progress']['percent']:5.1f} %", file=self.stream, flush=True)


class RichBar:
    """A rich progress bar whose description is the current stage."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.task = self.progress.add_task("starting", total=100)

    def __enter__(self) -> "RichBar":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, state: dict[str, Any]) -> None:
        stage = state["progress"]["stage"]
        label = STAGE_LABELS.get(stage, stage) if state["status"] in ("running", "completed") else state["status"]
        self.progress.update(self.task, completed=state["progress"]["percent"] or 0, description=label)


def _rich_console(stderr: bool) -> Any:
    """A rich console when rich is importable, else None."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(stderr=stderr)


def progress_display(enabled: bool = True) -> Any:
    """The progress reporter for a run: a rich bar on a terminal, stage lines otherwise."""
    console = _rich_console(stderr=True) if enabled else None
    if console is not None and console.is_terminal:
        return RichBar(console)
    return StageLines() if enabled else _Silent()


class _Silent(StageLines):
    def __call__(self, state: dict[str, Any]) -> None:
        pass


# ------------------------------------------------------------------------ summary


def _result_rows(result: RunResult) -> list[tuple[str, str]]:
    rejected = ", ".join(f"{k}={v}" for k, v in sorted(result.rejected.items())) or "none"
    warnings = ", ".join(f"{k}={v}" for k, v in sorted(result.warnings.items())) or "none"
    stages = "  ".join(f"{k} {v:.3f} s" for k, v in result.seconds.items())
    return [
        ("status", result.status),
        ("mode", result.mode),
        ("rows", f"{result.rows}  (inserted {result.inserted}, updated {result.updated}, deleted {result.deleted})"),
        ("rejected", rejected),
        ("warnings", warnings),
        ("seconds", f"{stages}  (total {sum(result.seconds.values()):.3f} s)"),
    ]


def print_result(result: RunResult) -> None:
    """The final summary: a rich table when rich is importable, else aligned lines."""
    if result.status == "already_running":
        print(f"status     already_running (a rebuild of {result.target} runs since {result.started_at})")
        return
    rows = _result_rows(result)
    if result.error:
        rows.append(("error", result.error))
    console = _rich_console(stderr=False)
    if console is None:
        for name, value in rows:
            print(f"{name:<10} {value}")
        return
    from rich.table import Table

    table = Table(title=f"siret_summary → {result.target}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _rebuild(args: argparse.Namespace, source: str, target: str | None, config: Config, **kwargs: Any) -> int:
    with progress_display(not args.no_progress) as show:
        result = run(source, target, config=config, on_status=show, **kwargs)
    print_result(result)
    return 0 if result.status == "completed" else 1


# ----------------------------------------------------------------------- commands


def _config(args: argparse.Namespace) -> Config:
    return Config(target_table=args.table) if getattr(args, "table", None) else Config()


def _demo(args: argparse.Namespace) -> int:
    from .demo_data import generate, write_sqlite

    path = Path(args.path).resolve()
    t0 = time.perf_counter()
    pv, invitations = generate(n_pv=args.pv, n_invitations=args.invitations, seed=args.seed)
    write_sqlite(str(path), pv, invitations)
    print(f"demo database {path}: {pv.num_rows} PV rows, {invitations.num_rows} invitations "
          f"(generated and written in {time.perf_counter() - t0:.2f} s)")
    return _rebuild(args, str(path), None, Config(), mode="full", force=True)


def _run(args: argparse.Namespace) -> int:
    return _rebuild(args, args.source, args.target, _config(args), mode=args.mode, force=args.force,
                    sirets=args.siret or None)


def _default_target(args: argparse.Namespace) -> str:
    return args.target or os.environ.get(TARGET_VARIABLE) or DEMO_PATH


def _status(args: argparse.Namespace) -> int:
    state = status(_default_target(args), config=_config(args))
    if state is None:
        state = {"task_id": TASK_ID, "status": "not_found", "message": "no rebuild of this target has run yet"}
    if args.json:
        print(json.dumps(state, ensure_ascii=False, indent=2))
        return 0
    print(f"status     {state['status']}")
    if state["status"] == "not_found":
        print(f"message    {state['message']}")
        return 0
    progress = state["progress"]
    print(f"stage      {progress['stage']} ({progress['percent'] or 0:.1f} %)")
    print(f"started    {state['started_at']}")
    if state.get("completed_at"):
        print(f"completed  {state['completed_at']}  ({state.get('duration_seconds', 0):.3f} s)")
    elif "elapsed_seconds" in state:
        print(f"elapsed    {state['elapsed_seconds']:.1f} s")
    result = state.get("result") or {}
    if result:
        print(f"rows       {result.get('rows')}  (inserted {result.get('inserted')}, "
              f"updated {result.get('updated')}, deleted {result.get('deleted')})")
        rejected = ", ".join(f"{k}={v}" for k, v in sorted((result.get("rejected") or {}).items())) or "none"
        print(f"rejected   {rejected}")
        seconds = "  ".join(f"{k} {v:.3f} s" for k, v in (result.get("seconds") or {}).items())
        print(f"seconds    {seconds}")
    if state.get("error"):
        print(f"error      {state['error']}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    if cancel(args.target, config=_config(args)):
        print("cancellation requested; the running rebuild stops at its next checkpoint")
        return 0
    print("no rebuild of this target is running")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siret-summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage")
    sub = parser.add_subparsers(dest="command", required=True)

    def progress_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-progress", action="store_true", help="no progress bar or stage lines")

    def table_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--table", default=None, help="target table name (default: siret_summary)")

    demo = sub.add_parser("demo", help="generate a realistic SQLite demo database and rebuild it")
    demo.add_argument("--path", default=DEMO_PATH, help=f"SQLite file to (re)create (default: ./{DEMO_PATH})")
    demo.add_argument("--pv", type=int, default=126_000, help="PV rows (default 126000)")
    demo.add_argument("--invitations", type=int, default=20_000, help="invitation rows (default 20000)")
    demo.add_argument("--seed", type=int, default=42)
    progress_flag(demo)
    demo.set_defaults(func=_demo)

    run_p = sub.add_parser("run", help="rebuild the summary table")
    run_p.add_argument("--source", required=True, help="postgresql:// URI or SQLite path of Tous_PV and invitations")
    run_p.add_argument("--target", default=None, help="database to write (default: the source)")
    run_p.add_argument("--mode", default="auto", choices=list(MODES))
    run_p.add_argument("--siret", action="append", help="refresh only this SIRET (repeatable)")
    run_p.add_argument("--force", action="store_true", help="write even if the table would shrink by half")
    table_flag(run_p)
    progress_flag(run_p)
    run_p.set_defaults(func=_run)

    status_p = sub.add_parser("status", help="the latest rebuild's status")
    status_p.add_argument(
        "--target", default=None,
        help=f"postgresql:// URI or SQLite path (default: ${TARGET_VARIABLE}, else ./{DEMO_PATH})",
    )
    status_p.add_argument("--json", action="store_true", help="print the status JSON")
    table_flag(status_p)
    status_p.set_defaults(func=_status)

    cancel_p = sub.add_parser("cancel", help="ask the running rebuild of a target to stop")
    cancel_p.add_argument("--target", required=True, help="postgresql:// URI or SQLite path")
    table_flag(cancel_p)
    cancel_p.set_defaults(func=_cancel)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except SiretSummaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the run rolled back; its record reads ``interrupted``
        print("interrupted; the target is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
