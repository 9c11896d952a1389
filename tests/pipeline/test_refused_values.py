"""Issue 24 case 6: a value the target refuses is named by its column and its SIRET, whatever refuses it.

The target (the legacy ``siret_summary`` table, filled by a first run) gets a
CHECK constraint, a NOT NULL, a narrower type (an enum) or a trigger that
raises; emptied, so a full run writes every row again, the run must fail
naming the column and one SIRET whose value is refused, and leave the table
as it was (empty).
"""

from __future__ import annotations

import re

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_postgres, write_sqlite

from dbutil import execute, query, scalar


@pytest.fixture
def filled(pg_db):
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=30, seed=6, sqlite_mess=False))
    assert siret_summary.run(pg_db).status == "completed"
    return pg_db


def _sirets(db: str, where: str) -> set[str]:
    return set(query(db, f"SELECT siret FROM siret_summary WHERE {where}").get_column("siret").to_list())


def _refused(db: str, column: str, sirets: set[str]) -> None:
    assert sirets, "the case refuses no row: the test data changed"
    with pytest.raises(siret_summary.TargetError) as raised:
        siret_summary.run(db, mode="full")
    message = str(raised.value)
    assert f"column {column} for SIRET " in message, message
    named = message.split(" for SIRET ", 1)[1].split(" ", 1)[0]
    assert named in sirets, message
    assert "left unchanged" in message and scalar(db, "SELECT count(*) FROM siret_summary") == 0


@pytest.mark.slow
def test_a_check_constraint(filled):
    top = scalar(filled, "SELECT max(cgt_voix_c4) FROM siret_summary")
    sirets = _sirets(filled, f"cgt_voix_c4 = {top}")
    execute(filled, "TRUNCATE siret_summary", f"ALTER TABLE siret_summary ADD CONSTRAINT small_c4 CHECK (cgt_voix_c4 < {top})")
    _refused(filled, "cgt_voix_c4", sirets)


@pytest.mark.slow
def test_a_not_null_constraint(filled):
    sirets = _sirets(filled, "ville IS NULL")
    execute(filled, "TRUNCATE siret_summary", "ALTER TABLE siret_summary ALTER COLUMN ville SET NOT NULL")
    _refused(filled, "ville", sirets)


@pytest.mark.slow
def test_a_type_that_does_not_take_the_value(filled):
    ville = query(filled, "SELECT min(ville) AS v FROM siret_summary").item()
    sirets = _sirets(filled, "ville = (SELECT min(ville) FROM siret_summary)")
    execute(filled, "TRUNCATE siret_summary",
            f"CREATE DOMAIN ville_d AS text CHECK (VALUE <> '{ville.replace(chr(39), chr(39) * 2)}')",
            "ALTER TABLE siret_summary ALTER COLUMN ville TYPE ville_d")
    _refused(filled, "ville", sirets)


@pytest.mark.slow
def test_a_refusal_of_every_row_blames_no_siret(filled):
    """Neighbour: a column type no text is assigned to (an enum) refuses every row: no one SIRET is named."""
    villes = query(filled, "SELECT DISTINCT ville FROM siret_summary WHERE ville IS NOT NULL")["ville"].to_list()
    labels = ", ".join("'" + v.replace("'", "''") + "'" for v in villes)
    execute(filled, "TRUNCATE siret_summary", f"CREATE TYPE ville_t AS ENUM ({labels})",
            "ALTER TABLE siret_summary ALTER COLUMN ville TYPE ville_t USING ville::ville_t")
    with pytest.raises(siret_summary.TargetError) as raised:
        siret_summary.run(filled, mode="full")
    assert "SIRET" not in str(raised.value) and "ville" in str(raised.value)


@pytest.mark.slow
def test_a_trigger_that_raises(filled):
    top = scalar(filled, "SELECT max(inscrits_c4) FROM siret_summary")
    sirets = _sirets(filled, f"inscrits_c4 = {top}")
    execute(
        filled, "TRUNCATE siret_summary",
        "CREATE FUNCTION refuse_big() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.inscrits_c4 >= {top} THEN RAISE EXCEPTION 'too many inscrits'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_big BEFORE INSERT OR UPDATE ON siret_summary FOR EACH ROW EXECUTE FUNCTION refuse_big()",
    )
    _refused(filled, "inscrits_c4", sirets)


@pytest.mark.slow
def test_a_refusal_of_the_replacing_write_names_them_too(filled):
    """Neighbour: not an empty target: the rows that changed go through staging, DELETE and INSERT."""
    top = scalar(filled, "SELECT max(cgt_voix_c4) FROM siret_summary")
    sirets = _sirets(filled, f"cgt_voix_c4 = {top}")
    execute(filled, f"UPDATE siret_summary SET cgt_voix_c4 = 0 WHERE cgt_voix_c4 = {top}",
            f"ALTER TABLE siret_summary ADD CONSTRAINT small_c4 CHECK (cgt_voix_c4 < {top})")
    rows = scalar(filled, "SELECT count(*) FROM siret_summary")
    with pytest.raises(siret_summary.TargetError) as raised:
        siret_summary.run(filled, mode="full")
    message = str(raised.value)
    assert "column cgt_voix_c4 for SIRET " in message and message.split(" for SIRET ", 1)[1].split(" ", 1)[0] in sirets
    assert scalar(filled, "SELECT count(*) FROM siret_summary") == rows


def test_a_check_constraint_of_a_sqlite_target(tmp_path):
    """Neighbour: SQLite names no column or row either; the same tries find them."""
    db = str(tmp_path / "app.db")
    write_sqlite(db, *generate(n_pv=300, n_invitations=30, seed=6))
    assert siret_summary.run(db).status == "completed"
    top = scalar(db, "SELECT max(cgt_voix_c4) FROM siret_summary")
    sirets = _sirets(db, f"cgt_voix_c4 = {top}")
    definition = scalar(db, "SELECT sql FROM sqlite_master WHERE name = 'siret_summary'")
    checked = re.sub(r'("?cgt_voix_c4"?\s+INTEGER)', rf"\1 CHECK (cgt_voix_c4 < {top})", definition, count=1, flags=re.I)
    assert checked != definition, definition
    execute(db, "DROP TABLE siret_summary", checked)
    _refused(db, "cgt_voix_c4", sirets)

