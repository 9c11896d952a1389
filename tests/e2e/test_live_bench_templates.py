"""``benchmarks/live_bench.py`` imports only PV rows that make a target row when copied (issue 28).

The freshness phase waits for every imported SIRET to appear in the target; a
template whose copy makes no target row made it wait forever (seen at 20,000 and
126,000 PV rows). Here one candidate is made such a trap on purpose: a PV row
alone under its SIRET, dated outside every configured cycle, whose SIRET stays
in the target through an invitation spelled differently; the bench must not
pick it, and an import of 20 SIRETs must all reach the target.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_sqlite

pytestmark = pytest.mark.slow  # a few seconds

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def target_has(path: Path, siret: str) -> bool:
    with sqlite3.connect(path) as conn:
        return conn.execute('SELECT count(*) FROM "siret_summary" WHERE "siret" = ?', [siret]).fetchone()[0] == 1


@pytest.mark.timeout(300)
def test_bench_never_imports_a_pv_row_that_makes_no_target_row(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import live_bench
    finally:
        sys.path.remove(str(BENCHMARKS))
    path = tmp_path / "source.db"
    write_sqlite(path, *generate(2_000, 300, 42, sqlite_mess=False))
    siret_summary.run(str(path), mode="full")
    with sqlite3.connect(path) as conn:  # the first candidate the bench's query would pick
        trap, siret = conn.execute(
            'SELECT min(p."id_pv"), p."siret" FROM "Tous_PV" p JOIN "siret_summary" s ON s."siret" = p."siret" '
            'WHERE p."siret" NOT IN (SELECT "siret" FROM "invitations" WHERE "siret" IS NOT NULL) '
            'AND p."Cycle" IS NOT NULL AND p."date_scrutin" IS NOT NULL '
            'GROUP BY p."siret" HAVING count(*) = 1 ORDER BY 1 LIMIT 1').fetchone()
        conn.execute('UPDATE "Tous_PV" SET "date_scrutin" = \'1990-06-01\' WHERE "id_pv" = ?', [trap])
        spelled = f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"  # normalises to the same SIRET
        conn.execute('INSERT INTO "invitations" ("id", "siret", "date_invit") '
                     'SELECT max("id") + 1, ?, \'2022-03-01\' FROM "invitations"', [spelled])
    siret_summary.run(str(path), mode="full")
    assert target_has(path, siret), "precondition: the invitation keeps the trap's SIRET in the target"

    src = live_bench.Source(str(path))
    with sqlite3.connect(path) as conn:  # precondition: a copy of the trap makes no target row
        copy = src.fresh(1)[0]
        conn.execute(src.copy_sql([(copy, trap)]))
    siret_summary.run(str(path), mode="auto")
    assert not target_has(path, copy), "precondition: the trap's copy makes no target row"

    assert trap not in src.templates
    sirets, _ = src.commit_import(20)
    siret_summary.run(str(path), mode="auto")
    with sqlite3.connect(path) as conn:
        assert src.visible(conn, sirets)
