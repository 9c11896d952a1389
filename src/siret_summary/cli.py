"""Command line: ``siret-summary demo|run|status|cancel|history|export|rejects|explain|watch`` (SPEC §8).

``run`` and ``demo`` show a live progress bar (rich, when it is installed and
the output is a terminal; else one line per stage) driven by the run's
``on_status`` callback, then a summary of what the run did. ``status`` prints
the latest run's status (``not_found`` when none ran) and names the target it
read; ``cancel`` asks the running rebuild of a target, in any process, to
stop; ``history`` lists the last runs; ``export`` writes the summary to CSV or
Parquet, as its file name says, without touching any database
(:mod:`siret_summary.cli_outputs`); ``rejects`` prints samples of the rejected
and warned rows. Settings come from flags or a TOML file (``--config``, see
:mod:`siret_summary.cli_config`); errors are worded with the flags that fix them. Every failure is one line on
stderr and exit 2, whatever the exception (issue 25).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from siret_summary._version import __version__
from siret_summary.cli_config import (
    DEMO_PATH,
    TARGET_VARIABLE,
    add_config_flags,
    at_least,
    cli_message,
    config_from,
    settings,
    shown,
    source_from,
    target_from,
    utf8_text,
)  # fmt: skip
from siret_summary.cli_early import parsed, replay_unless_watching
from siret_summary.cli_explain import add_explain_command
from siret_summary.cli_failures import LibraryLines, closed_stdout, flushed, unexpected_message
from siret_summary.cli_outputs import demo_path, export_format, export_path, mark_demo_file, write_atomically
from siret_summary.cli_parser import DESCRIPTION, Parser
from siret_summary.cli_progress import RichBar, StageLines, Steps, progress_display, rich_console
from siret_summary.cli_records import record_mapping, record_text
from siret_summary.cli_status_hint import missing_file, missing_message, other_tables_hint
from siret_summary.cli_watch import add_watch_command
from siret_summary.config import Config
from siret_summary.errors import SiretSummaryError
from siret_summary.incremental.planning import Mode
from siret_summary.pipeline.compute import summarise
from siret_summary.pipeline.fork_guard import check as refuse_after_fork
from siret_summary.pipeline.read import read_sources
from siret_summary.rules.summary import Report
from siret_summary.runs.queries import cancel, history, status
from siret_summary.runs.records import TASK_ID
from siret_summary.runs.result import RunResult
from siret_summary.runs.runner import run

__all__ = ["RichBar", "StageLines", "build_parser", "main", "print_result", "progress_display"]


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
    console = rich_console(stderr=False)
    if console is None:
        for name, value in rows:
            print(f"{name:<10} {value}")
        return
    # Lazy: rich is the optional [cli] extra (a console was found, so it is installed).
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
    # Lazy: the demo generator loads for the demo command only.
    from siret_summary.demo_data import generate, write_sqlite
    from siret_summary.demo_data.vocabulary import INVITATIONS_TABLE, PV_TABLE

    # Checked before anything is generated: the legacy tables the demo drops and recreates.
    path = demo_path(args.path, force=args.force, tables=(PV_TABLE, INVITATIONS_TABLE, "siret_summary",
                                                          "siret_summary_c4"))
    t0 = time.perf_counter()
    pv, invitations = generate(n_pv=args.pv, n_invitations=args.invitations, seed=args.seed)
    write_sqlite(str(path), pv, invitations)
    mark_demo_file(path)  # running the demo again may replace what it wrote
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
    missing = missing_file(target)  # status() raises on it; the CLI answers not_found and says why
    state = None if missing else status(target, config=config)
    if state is None:
        message = (f"no rebuild of {_where(target, config)} has run: {missing_message(missing)}" if missing else
                   f"no rebuild of {_where(target, config)} has run yet (another database: --target, --config "
                   f"or ${TARGET_VARIABLE}){other_tables_hint(target, config)}")
        state = {"task_id": TASK_ID, "status": "not_found", "target": config.target_table,
                 "location": shown(target), "message": message}
    if args.json:
        print(json.dumps(state, ensure_ascii=False, indent=2, default=str))
        return 0
    print(f"target     {_where(target, config)}")
    print(f"status     {record_text(state.get('status'))}")
    if state.get("status") == "not_found":
        print(f"message    {state.get('message')}")
        return 0
    progress = record_mapping(state.get("progress"))
    print(f"stage      {record_text(progress.get('stage'))} ({record_text(progress.get('percent') or 0, '.1f')} %)")
    print(f"started    {record_text(state.get('started_at'))}")
    if state.get("completed_at"):
        took = record_text(state.get('duration_seconds'), '.3f')
        print(f"completed  {record_text(state['completed_at'])}  ({took} s)")
    elif "elapsed_seconds" in state:
        print(f"elapsed    {record_text(state['elapsed_seconds'], '.1f')} s")
    result = record_mapping(state.get("result"))
    if result:
        print(f"rows       {record_text(result.get('rows'))}  (inserted {record_text(result.get('inserted'))}, "
              f"updated {record_text(result.get('updated'))}, deleted {record_text(result.get('deleted'))})")
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(record_mapping(result.get("rejected")).items())) or "none"
        print(f"rejected   {rejected}")
        seconds = "  ".join(f"{k} {record_text(v, '.3f')} s" for k, v in record_mapping(result.get("seconds")).items())
        print(f"seconds    {seconds}")
    if state.get("error"):
        print(f"error      {record_text(state['error'])}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    target, config = target_from(args), config_from(args)
    missing = missing_file(target)
    if missing:
        print(f"no rebuild of {_where(target, config)} is running: {missing_message(missing)}")
        return 1
    if cancel(target, config=config):
        print(f"cancellation requested for {_where(target, config)}; "
              "the running rebuild stops at its next checkpoint")
        return 0
    print(f"no rebuild of {_where(target, config)} is running")
    return 1


def _history(args: argparse.Namespace) -> int:
    target, config = target_from(args), config_from(args)
    missing = missing_file(target)
    runs = [] if missing else history(target, config=config, limit=args.limit)
    if args.json:
        print(json.dumps(runs, ensure_ascii=False, indent=2, default=str))
        return 0
    print(f"target     {_where(target, config)}")
    if not runs:
        print(missing_message(missing) if missing else
              f"no rebuild of this target has run yet{other_tables_hint(target, config)}")
        return 0
    header = (f"{'started':<24} {'status':<11} {'mode':<11} {'seconds':>8} {'rows':>8} {'ins':>7} {'upd':>7} "
              f"{'del':>7}  error")
    print(header)
    for state in runs:
        result = record_mapping(state.get("result"))
        seconds = state.get("duration_seconds", state.get("elapsed_seconds"))
        rows, inserted, updated, deleted = (record_text(result.get(k))
                                            for k in ("rows", "inserted", "updated", "deleted"))
        print(f"{record_text(state.get('started_at'))[:23]:<24} {record_text(state.get('status')):<11} "
              f"{record_text(result.get('mode')):<11} {record_text(seconds, '.2f'):>8} {rows:>8} {inserted:>7} "
              f"{updated:>7} {deleted:>7}  {state.get('error') or ''}".rstrip())
    return 0


def _summarised(step: Steps, source: Any, config: Config, *, compute_at: float) -> tuple[pl.DataFrame, Report]:
    """The sources read and summarised with the read and compute steps shown: ``summarise``'s (frame, counts)."""
    step("read", 0.0)
    raw = read_sources(source, config)
    step("compute", compute_at)
    return summarise(raw, config)


def _export(args: argparse.Namespace) -> int:
    refuse_after_fork()
    source, config = source_from(args), config_from(args)
    output = export_path(args.output, source, force=args.force)  # checked before the work, not after
    fmt = export_format(args.output, args.format)
    t0 = time.perf_counter()
    with progress_display(not args.no_progress, piped=False) as show:
        step = Steps(show)
        frame = _summarised(step, source, config, compute_at=30.0)[0]
        step("write", 90.0)
        write_atomically(output, frame.write_parquet if fmt == "parquet" else frame.write_csv, force=args.force)
        step.done()
    print(f"{frame.height} rows × {frame.width} columns written to {output} ({fmt}, "
          f"{time.perf_counter() - t0:.2f} s); no database was written")
    return 0


def _rejects(args: argparse.Namespace) -> int:
    # Lazy: the samples re-read loads for the rejects command only (as in compute_report).
    from siret_summary.pipeline.samples import rejected_samples

    refuse_after_fork()
    source, config = source_from(args), config_from(args)
    with progress_display(not args.no_progress, piped=False) as show:  # compute_report's steps, shown (issue 29)
        step = Steps(show)
        counts = _summarised(step, source, config, compute_at=40.0)[1]
        report: dict[str, Any] = {"rejected": counts.rejected, "warnings": counts.warnings}
        if args.limit > 0:
            step("samples", 70.0)
            report["samples"] = rejected_samples(source, config, args.limit)
        step.done()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    for kind in ("rejected", "warnings"):
        listed = ", ".join(f"{k}={v}" for k, v in sorted(report[kind].items())) or "none"
        print(f"{kind:<10} {listed}")
    samples = report.get("samples", [])  # --limit 0: counts only
    if args.limit == 0:
        return 0
    if not samples:
        print("no rejected or warned row")
        return 0
    print(f"\nsamples (at most {args.limit} per reason):")
    print(f"{'reason':<28} {'table':<12} {'row id':>10}  {'column':<14} raw value")
    for sample in samples:
        row_id = "-" if sample["row_id"] is None else str(sample["row_id"])
        value = "NULL" if sample["value"] is None else repr(sample["value"])
        print(f"{sample['reason']:<28} {sample['table']:<12} {row_id:>10}  {sample['column']:<14} {value}")
    return 0


# ------------------------------------------------------------------------- parser


# Over 60 lines on purpose: one declarative table of every command and flag,
# read top to bottom like the --help it produces; split, it would scatter.
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="siret-summary", description=DESCRIPTION,
        epilog="Settings file (--config FILE, TOML): Config fields plus source and target; "
               "see docs in README.md ('Command line').",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # -v is accepted before or after the command: the command's copy must not reset the main one.
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage")
    common = Parser(add_help=False)
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
                       help="postgresql:// URI or SQLite path of Tous_PV and invitations "
                            "(default: the --config file's)")

    demo = command("demo", "generate a realistic SQLite demo database and rebuild it", _demo)
    demo.add_argument("--path", default=DEMO_PATH, help=f"SQLite file to (re)create (default: ./{DEMO_PATH})")
    demo.add_argument("--pv", type=at_least(0), default=126_000, help="PV rows (default 126000)")
    demo.add_argument("--invitations", type=at_least(0), default=20_000, help="invitation rows (default 20000)")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--force", action="store_true", help="replace the legacy tables the file already holds")
    progress_flag(demo)

    run_p = command("run", "rebuild the summary table", _run)
    source_flag(run_p)
    run_p.add_argument("--target", default=None,
                       help="database to write (default: the --config file's, else the source)")
    run_p.add_argument("--mode", default="auto", choices=[m.value for m in Mode])
    run_p.add_argument("--siret", action="append", type=utf8_text, help="refresh only this SIRET (repeatable)")
    run_p.add_argument("--force", action="store_true", help="write even if the table would shrink by half")
    progress_flag(run_p)
    add_config_flags(run_p)

    status_p = command("status", "the latest rebuild's status", _status)
    target_flag(status_p)
    status_p.add_argument("--json", action="store_true", help="print the status JSON")
    add_config_flags(status_p, sources=False)

    cancel_p = command("cancel", "ask the running rebuild of a target to stop", _cancel)
    target_flag(cancel_p)
    add_config_flags(cancel_p, sources=False)

    history_p = command("history", "the last rebuilds of a target, newest first", _history)
    target_flag(history_p)
    history_p.add_argument("--limit", type=at_least(1), default=20, help="how many runs (default 20)")
    history_p.add_argument("--json", action="store_true", help="print the status JSON of each run")
    add_config_flags(history_p, sources=False)

    export_p = command("export", "compute the summary and write it to CSV or Parquet (no database written)", _export)
    source_flag(export_p)
    export_p.add_argument("--output", "-o", required=True, help="file to write: .csv, .parquet or .pq")
    export_p.add_argument("--format", choices=("csv", "parquet"),
                          help="default: from the file's extension (a name without one: csv)")
    export_p.add_argument("--force", action="store_true", help="replace the file if it exists (never the source)")
    progress_flag(export_p)
    add_config_flags(export_p)

    rejects_p = command("rejects", "the rejected and warned source rows: counts and samples by reason", _rejects)
    source_flag(rejects_p)
    rejects_p.add_argument("--limit", type=at_least(0), default=5,
                           help="samples per reason (default 5; 0: counts only)")
    rejects_p.add_argument("--json", action="store_true", help="print the report with its samples as JSON")
    progress_flag(rejects_p)
    add_config_flags(rejects_p)
    add_explain_command(command, source_flag)  # cli_explain.py
    add_watch_command(command, source_flag)  # cli_watch.py
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parsed(build_parser(), argv)  # with the signals cli_entry.py took meanwhile (cli_early.py)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    library, not_raised = logging.getLogger("siret_summary"), LibraryLines(args.verbose)
    library.addFilter(not_raised)  # for this command only: main() may run inside a host process
    try:
        replay_unless_watching(args)  # Ctrl-C while loading: exit 130 below, as if it arrived now
        command: Callable[[argparse.Namespace], int] = args.func  # set_defaults(func=...) of each subcommand
        return flushed(command(args))  # a closed pipe fails in there, not in the interpreter's last flush
    except BrokenPipeError:  # stdout's reader went away (`… | head`): quiet, 141 (cli_failures.PIPE_CLOSED)
        return closed_stdout()
    except SiretSummaryError as exc:
        print(f"error: {cli_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the run rolled back; its record reads ``interrupted``
        print("interrupted; the target is unchanged", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: still one line and exit 2, never a traceback (issue 25)
        if args.verbose:
            logging.getLogger("siret_summary").exception("unexpected failure of `%s`", args.command)
        print(f"error: {unexpected_message(args.command, exc)}", file=sys.stderr)
        return 2
    finally:
        library.removeFilter(not_raised)


if __name__ == "__main__":
    sys.exit(main())
