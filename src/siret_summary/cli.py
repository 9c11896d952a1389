"""Command line: ``siret-summary demo | run | status | cancel | history | export | rejects | explain`` (SPEC §8).

``run`` and ``demo`` show a live progress bar (rich, when it is installed and
the output is a terminal; else one line per stage) driven by the run's
``on_status`` callback, then a summary of what the run did. ``status`` prints
the latest run's status (``not_found`` when none ran) and names the target it
read; ``cancel`` asks the running rebuild of a target, in any process, to
stop; ``history`` lists the last runs; ``export`` writes the summary to CSV or
Parquet without touching any database; ``rejects`` prints samples of the
rejected and warned rows. Settings come from flags or a TOML file
(``--config``, see :mod:`siret_summary.cli_config`); errors are worded with
the flags that fix them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from siret_summary._version import __version__
from siret_summary.cli_config import (
    DEMO_PATH, TARGET_VARIABLE, add_config_flags, cli_message, config_from, settings, shown, source_from,
    target_from,
)  # fmt: skip
from siret_summary.cli_explain import add_explain_command
from siret_summary.config import Config
from siret_summary.errors import SiretSummaryError
from siret_summary.incremental.plan import Mode
from siret_summary.runs.queries import cancel, history, status
from siret_summary.runs.result import RunResult
from siret_summary.runs.runner import run
from siret_summary.runs.status import TASK_ID
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
    if result.status == "cancelled":  # nothing was written: the rows the target still holds
        rows = f"{result.rows} in the target, unchanged"
    else:
        rows = f"{result.rows}  (inserted {result.inserted}, updated {result.updated}, deleted {result.deleted})"
    return [
        ("status", result.status),
        ("mode", result.mode),
        ("rows", rows),
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

def _demo(args: argparse.Namespace) -> int:
    from siret_summary.demo_data import generate, write_sqlite

    path = Path(args.path).resolve()
    t0 = time.perf_counter()
    pv, invitations = generate(n_pv=args.pv, n_invitations=args.invitations, seed=args.seed)
    write_sqlite(str(path), pv, invitations)
    print(f"demo database {path}: {pv.num_rows} PV rows, {invitations.num_rows} invitations "
          f"(generated and written in {time.perf_counter() - t0:.2f} s)")
    return _rebuild(args, str(path), None, Config(), mode="full", force=True)


def _run(args: argparse.Namespace) -> int:
    target = args.target or settings(args).get("target")  # else the source
    return _rebuild(args, source_from(args), target, config_from(args), mode=args.mode, force=args.force,
                    sirets=args.siret or None)


def _where(target: str, config: Config) -> str:
    return f"{config.target_table} in {shown(target)}"


def _status(args: argparse.Namespace) -> int:
    target, config = target_from(args), config_from(args)
    state = status(target, config=config)
    if state is None:
        state = {"task_id": TASK_ID, "status": "not_found", "target": config.target_table,
                 "location": shown(target), "message": f"no rebuild of {_where(target, config)} has run yet "
                            f"(another database: --target, --config or ${TARGET_VARIABLE})"}
    if args.json:
        print(json.dumps(state, ensure_ascii=False, indent=2))
        return 0
    print(f"target     {_where(target, config)}")
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
    target, config = target_from(args), config_from(args)
    if cancel(target, config=config):
        print(f"cancellation requested for {_where(target, config)}; "
              "the running rebuild stops at its next checkpoint")
        return 0
    print(f"no rebuild of {_where(target, config)} is running")
    return 1


def _history(args: argparse.Namespace) -> int:
    target, config = target_from(args), config_from(args)
    runs = history(target, config=config, limit=args.limit)
    if args.json:
        print(json.dumps(runs, ensure_ascii=False, indent=2))
        return 0
    print(f"target     {_where(target, config)}")
    if not runs:
        print("no rebuild of this target has run yet")
        return 0
    header = f"{'started':<24} {'status':<11} {'mode':<11} {'seconds':>8} {'rows':>8} {'ins':>7} {'upd':>7} {'del':>7}  error"
    print(header)
    for state in runs:
        result = state.get("result") or {}
        seconds = state.get("duration_seconds", state.get("elapsed_seconds"))

        def num(key: str) -> str:
            return "-" if result.get(key) is None else str(result[key])

        print(f"{state['started_at'][:23]:<24} {state['status']:<11} {result.get('mode') or '-':<11} "
              f"{'-' if seconds is None else f'{seconds:.2f}':>8} {num('rows'):>8} {num('inserted'):>7} "
              f"{num('updated'):>7} {num('deleted'):>7}  {state.get('error') or ''}".rstrip())
    return 0


def _export(args: argparse.Namespace) -> int:
    from siret_summary.pipeline.compute import compute

    output = Path(args.output)
    fmt = args.format or ("parquet" if output.suffix.lower() in (".parquet", ".pq") else "csv")
    t0 = time.perf_counter()
    frame = compute(source_from(args), config=config_from(args))
    if fmt == "parquet":
        frame.write_parquet(output)
    else:
        frame.write_csv(output)
    print(f"{frame.height} rows × {frame.width} columns written to {output.resolve()} ({fmt}, "
          f"{time.perf_counter() - t0:.2f} s); no database was written")
    return 0


def _rejects(args: argparse.Namespace) -> int:
    from siret_summary.pipeline.compute import compute_report

    report = compute_report(source_from(args), config=config_from(args), samples=args.limit)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    for kind in ("rejected", "warnings"):
        counts = ", ".join(f"{k}={v}" for k, v in sorted(report[kind].items())) or "none"
        print(f"{kind:<10} {counts}")
    samples = report["samples"]
    if not samples:
        print("no rejected or warned row")
        return 0
    print(f"\nsamples (at most {args.limit} per reason):")
    print(f"{'reason':<28} {'table':<12} {'row id':>10}  {'column':<14} raw value")
    for sample in samples:
        row_id = "-" if sample["row_id"] is None else str(sample["row_id"])
        raw = "NULL" if sample["value"] is None else repr(sample["value"])
        print(f"{sample['reason']:<28} {sample['table']:<12} {row_id:>10}  {sample['column']:<14} {raw}")
    return 0


# ------------------------------------------------------------------------- parser

# Over 60 lines on purpose: one declarative table of every command and flag,
# read top to bottom like the --help it produces; split, it would scatter.
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siret-summary", description=__doc__.split("\n\n")[0],
        epilog="Settings file (--config FILE, TOML): Config fields plus source and target; "
               "see docs in README.md ('Command line').",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # -v is accepted before or after the command: the command's copy must not reset the main one.
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log each stage")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=func)
        return p

    def progress_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-progress", action="store_true", help="no progress bar or stage lines")

    def target_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", default=None, help=(
            f"postgresql:// URI or SQLite path (default: the --config file's target, else its source, "
            f"else ${TARGET_VARIABLE}, else ./{DEMO_PATH})"))

    def source_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--source", default=None,
                       help="postgresql:// URI or SQLite path of Tous_PV and invitations (default: the --config file's)")

    demo = command("demo", "generate a realistic SQLite demo database and rebuild it", _demo)
    demo.add_argument("--path", default=DEMO_PATH, help=f"SQLite file to (re)create (default: ./{DEMO_PATH})")
    demo.add_argument("--pv", type=int, default=126_000, help="PV rows (default 126000)")
    demo.add_argument("--invitations", type=int, default=20_000, help="invitation rows (default 20000)")
    demo.add_argument("--seed", type=int, default=42)
    progress_flag(demo)

    run_p = command("run", "rebuild the summary table", _run)
    source_flag(run_p)
    run_p.add_argument("--target", default=None, help="database to write (default: the --config file's, else the source)")
    run_p.add_argument("--mode", default="auto", choices=[m.value for m in Mode])
    run_p.add_argument("--siret", action="append", help="refresh only this SIRET (repeatable)")
    run_p.add_argument("--force", action="store_true", help="write even if the table would shrink by half")
    progress_flag(run_p)
    add_config_flags(run_p)

    status_p = command("status", "the latest rebuild's status", _status)
    target_flag(status_p)
    status_p.add_argument("--json", action="store_true", help="print the status JSON")
    add_config_flags(status_p)

    cancel_p = command("cancel", "ask the running rebuild of a target to stop", _cancel)
    target_flag(cancel_p)
    add_config_flags(cancel_p)

    history_p = command("history", "the last rebuilds of a target, newest first", _history)
    target_flag(history_p)
    history_p.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    history_p.add_argument("--json", action="store_true", help="print the status JSON of each run")
    add_config_flags(history_p)

    export_p = command("export", "compute the summary and write it to CSV or Parquet (no database written)", _export)
    source_flag(export_p)
    export_p.add_argument("--output", "-o", required=True, help="file to write (.csv or .parquet)")
    export_p.add_argument("--format", choices=("csv", "parquet"), help="default: from the file's extension, else csv")
    add_config_flags(export_p)

    rejects_p = command("rejects", "the rejected and warned source rows: counts and samples by reason", _rejects)
    source_flag(rejects_p)
    rejects_p.add_argument("--limit", type=int, default=5, help="samples per reason (default 5)")
    rejects_p.add_argument("--json", action="store_true", help="print the report with its samples as JSON")
    add_config_flags(rejects_p)
    add_explain_command(command, source_flag)  # cli_explain.py
    return parser


class _NotRaised(logging.Filter):
    """Drops the library's log line of a failure the CLI prints itself (else every failure shows twice)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "siret_summary_raised", False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    library, not_raised = logging.getLogger("siret_summary"), _NotRaised()
    library.addFilter(not_raised)  # for this command only: main() may run inside a host process
    try:
        return args.func(args)
    except SiretSummaryError as exc:
        print(f"error: {cli_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the run rolled back; its record reads ``interrupted``
        print("interrupted; the target is unchanged", file=sys.stderr)
        return 130
    finally:
        library.removeFilter(not_raised)


if __name__ == "__main__":
    sys.exit(main())
