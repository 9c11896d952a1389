"""Generate the messy demo source tables and load them into SQLite or PostgreSQL.

    python benchmarks/generate.py --sqlite demo.db
    python benchmarks/generate.py --postgres postgresql://user@host/db --pv 500000

Prints the row counts and the seconds spent generating and writing.
"""

from __future__ import annotations

import argparse
import time

from siret_summary.demo_data import generate, write_postgres, write_sqlite


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--sqlite", metavar="PATH", help="SQLite file to (re)create the legacy tables in")
    target.add_argument("--postgres", metavar="URI", help="postgresql:// URI of the target database")
    parser.add_argument("--pv", type=int, default=126_000, help="rows of \"Tous_PV\" (default 126000)")
    parser.add_argument("--invitations", type=int, default=20_000, help="rows of invitations (default 20000)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    pv, invitations = generate(args.pv, args.invitations, args.seed, sqlite_mess=args.sqlite is not None)
    generated = time.perf_counter()
    if args.sqlite is not None:
        write_sqlite(args.sqlite, pv, invitations)
    else:
        write_postgres(args.postgres, pv, invitations)
    written = time.perf_counter()
    print(f'"Tous_PV": {pv.num_rows} rows, invitations: {invitations.num_rows} rows')
    print(f"generate: {generated - started:.2f} s, write {'sqlite' if args.sqlite else 'postgres'}: "
          f"{written - generated:.2f} s")


if __name__ == "__main__":
    main()
