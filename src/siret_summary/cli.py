"""Command line: ``siret-summary demo | run``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .errors import SiretSummaryError
from .runner import RunResult, run


def _print_result(result: RunResult) -> None:
    print(f"status     {result.status}")
    print(f"rows       {result.rows}  (inserted {result.inserted}, deleted {result.deleted})")
    rejected = ", ".join(f"{k}={v}" for k, v in sorted(result.rejected.items())) or "none"
    warnings = ", ".join(f"{k}={v}" for k, v in sorted(result.warnings.items())) or "none"
    print(f"rejected   {rejected}")
    print(f"warnings   {warnings}")
    stages = "  ".join(f"{k} {v:.3f} s" for k, v in result.seconds.items())
    print(f"seconds    {stages}  (total {sum(result.seconds.values()):.3f} s)")


def _demo(args: argparse.Namespace) -> int:
    from .demo_data import generate, write_sqlite

    path = Path(args.path).resolve()
    t0 = time.perf_counter()
    pv, invitations = generate(n_pv=args.pv, n_invitations=args.invitations, seed=args.seed)
    write_sqlite(str(path), pv, invitations)
    print(f"demo database {path}: {pv.num_rows} PV rows, {invitations.num_rows} invitations "
          f"(generated and written in {time.perf_counter() - t0:.2f} s)")
    result = run(str(path), force=True)
    _print_result(result)
    return 0


def _run(args: argparse.Namespace) -> int:
    result = run(args.source, args.target, mode=args.mode, force=args.force)
    _print_result(result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siret-summary", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate a realistic SQLite demo database and rebuild it")
    demo.add_argument("--path", default="siret_summary_demo.db", help="SQLite file to (re)create (default: ./siret_summary_demo.db)")
    demo.add_argument("--pv", type=int, default=126_000, help="PV rows (default 126000)")
    demo.add_argument("--invitations", type=int, default=20_000, help="invitation rows (default 20000)")
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(func=_demo)

    run_p = sub.add_parser("run", help="rebuild the summary table")
    run_p.add_argument("--source", required=True, help="postgresql:// URI or SQLite path of Tous_PV and invitations")
    run_p.add_argument("--target", default=None, help="database to write (default: the source)")
    run_p.add_argument("--mode", default="full", choices=["full"])
    run_p.add_argument("--force", action="store_true", help="write even if the table would shrink by half")
    run_p.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except SiretSummaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
