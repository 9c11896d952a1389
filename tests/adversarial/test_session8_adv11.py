"""Adversarial (session 8, adv11): the three speed changes of f120627 / bdf10fa.

1. capture identity: the captured tables' columns as one JSON array per table;
2. stamp seeds: both tables' seeds in one catalogue query, asked before either table is read;
3. seats: the quotient floors ``_f{i}`` computed by NumPy (``_float_floors``) instead of Polars.

Each finding's test says what was found and what changed; the other tests are attacks that held.
"""

from __future__ import annotations

import math
import uuid
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.db import connected, open_backend
from siret_summary.db.base import quote_table
from siret_summary.db.postgres import stamps
from siret_summary.demo_data import generate, write_postgres
from siret_summary.pipeline import read as read_module
from siret_summary.rules import seats

from dbutil import execute, read_table

CFG = siret_summary.Config(target_table="summary_a11", state_table="summary_a11_state")


def _assert_fresh(location: str, config: siret_summary.Config = CFG, reader: str | None = None) -> None:
    expected = siret_summary.compute(reader or location, config=config)
    assert_frame_equal(read_table(location, config.target_table, expected), expected)


def _as(uri: str, role: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname or ''}"))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- 2. stamp seeds asked together ------------------------------------------------------------------------

_SWAP = ("ALTER TABLE invitations RENAME TO inv_swap", "ALTER TABLE inv2 RENAME TO invitations",
         "ALTER TABLE inv_swap RENAME TO inv2")


def test_a_table_swapped_in_during_the_pv_read_leaves_no_stale_rows(pg_db, monkeypatch):
    """Found by adv11 (failing with both seeds asked before the PV read, bdf10fa): a table swapped in under
    the invitations' name during the PV read was read with the old table's seed (oid); its rows' stamps then
    equal the swapped-out rows' (same xmin) once it is back, and the next scan kept the other table's values.
    Each seed is asked again just before its table's own read."""
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=60, seed=5, sqlite_mess=False))
    # One transaction: every row of both tables stamped by the same xmin; other dates in inv2 (a staging copy).
    execute(pg_db, "CREATE TABLE inv2 AS SELECT * FROM invitations", "UPDATE invitations SET id = id",
            "UPDATE inv2 SET date_invit = date_invit + 400")
    assert siret_summary.run(pg_db, config=CFG).mode == "full"
    original, swapped = read_module._TableReader.normalised, []

    def swap_before_the_invitations_read(self, table, *args, **kwargs):
        if table == CFG.invitations_table and not swapped:  # after the PV read (and after seed_together)
            execute(pg_db, *_SWAP)
            swapped.append(True)
        return original(self, table, *args, **kwargs)

    monkeypatch.setattr(read_module._TableReader, "normalised", swap_before_the_invitations_read)
    siret_summary.run(pg_db, config=CFG, mode="full", force=True)  # reads inv2's rows (under "invitations")
    monkeypatch.undo()
    assert swapped
    execute(pg_db, *_SWAP)  # the original table back under its name
    assert siret_summary.run(pg_db, config=CFG, force=True).mode == "incremental"
    _assert_fresh(pg_db)


_OLD_SEED_SQL = (  # the per-table query of 5fcd9c5 (every column; the seed then keeps the mapped ones)
    "SELECT c.oid::bigint AS rel, c.relfilenode::bigint AS node, c.relkind::text AS kind, c.relhassubclass AS parent,"
    " has_table_privilege(c.oid, 'SELECT') AS readable, (SELECT amname::text FROM pg_am WHERE oid = c.relam) AS am,"
    " (SELECT oid FROM pg_database WHERE datname = current_database())::bigint AS db,"
    " pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,"
    " CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'execute')"
    "   THEN (SELECT system_identifier FROM pg_catalog.pg_control_system())::text END AS cluster,"
    " a.attname::text AS name, a.attnum::int AS num, a.atttypid::bigint AS type, a.atttypmod::int AS mod,"
    " a.attcollation::bigint AS coll, a.attmissingval::text AS missing,"
    " pg_postmaster_start_time()::text AS started, current_setting('TimeZone') AS tz"
    " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    " WHERE c.oid = to_regclass($1) ORDER BY a.attnum"
)
_HOSTILE = ["x", "X", "x ", 'q"uote', "back\\slash", "new\nline", "é" * 31, "c" * 63, "ünï €", '{"a": [1]}']


def test_seeds_asked_together_equal_the_old_per_table_seeds(pg_db):
    """Held: hostile and case-twin column names, schema-qualified and dotted names, the same table twice,
    partitioned / inherited / unlogged / generated / domain / typmod columns, a view, missing tables."""
    columns = ", ".join(f"{_quoted(c)} text" for c in _HOSTILE)
    execute(pg_db, "CREATE SCHEMA other", 'CREATE SCHEMA "we.ird"', f"CREATE TABLE t ({columns})",
            f"CREATE TABLE other.t (y int, {columns})", 'CREATE TABLE "we.ird".t (x text)',
            "CREATE TABLE part (x text, y int) PARTITION BY LIST (y)",
            "CREATE TABLE part1 PARTITION OF part FOR VALUES IN (1)", "CREATE TABLE inh (x text)",
            "CREATE TABLE inhc () INHERITS (inh)", "CREATE UNLOGGED TABLE unl (x text)",
            "CREATE TABLE gen (x text, g text GENERATED ALWAYS AS (upper(x)) STORED,"
            " i int GENERATED ALWAYS AS IDENTITY)",
            "CREATE DOMAIN dom AS text", "CREATE TABLE dt (x dom, y text)",
            'CREATE TABLE typ (x varchar(5), y numeric(5,2), z text COLLATE "C")', "CREATE VIEW v AS SELECT * FROM t",
            "ALTER TABLE t ADD COLUMN late text DEFAULT 'v'")
    tables = ["t", "other.t", "we.ird.t", "part", "part1", "inh", "inhc", "unl", "gen", "dt", "typ", "v", "missing",
              "nosuch.t"]
    sets = [_HOSTILE, _HOSTILE[::-1], ["x"], ["X"], ["x", "X"], ["late", "x"], ["g", "i", "x"], ["y", "x"],
            ["x", "nope"], ["y", "z"]]
    asked = [(t, c) for t in tables for c in sets]
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="test") as conn:
        old = [stamps._seed(backend.fetch_arrow(conn, _OLD_SEED_SQL, [quote_table(t)]).to_pylist(), c)
               for t, c in asked]
        together = stamps.stamp_seeds(backend, conn, asked)
        pairs = [stamps.stamp_seeds(backend, conn, [a, b]) for a in asked[::5] for b in asked[::7]]
    assert together == old
    assert pairs == [[old[i], old[j]] for i in range(0, len(asked), 5) for j in range(0, len(asked), 7)]
    assert sum(s is not None for s in old) >= 20


def test_a_host_name_text_equality_first_on_the_search_path_changes_no_seed(pg_db):
    """Held: ``evil.=(name, text)`` (case-insensitive) before pg_catalog: the query's column filter is
    re-checked by exact name in Python, so the seeds stay each table's own."""
    execute(pg_db, 'CREATE TABLE t (x text, "X" text, y text)', "CREATE SCHEMA evil",
            "CREATE FUNCTION evil.ieq(name, text) RETURNS boolean LANGUAGE sql IMMUTABLE"
            " AS 'SELECT lower($1) = lower($2)'",
            "CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.ieq)")
    asked = [("t", ["x"]), ("t", ["X", "y"]), ("t", ["x", "X"])]
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="test") as conn:
        clean = stamps.stamp_seeds(backend, conn, asked)
        backend.execute(conn, "SET search_path = evil, pg_catalog, public")
        hostile = stamps.stamp_seeds(backend, conn, asked)
        assert backend.fetch_arrow(conn, "SELECT 'x'::name = 'X'::text AS eq").to_pylist() == [{"eq": True}]
    assert hostile == clean and None not in clean


# --- 1. the capture identity ------------------------------------------------------------------------------

#: 63 bytes: JSON-special characters (quote, backslash, newline), non-ASCII, padding.
_NAME = 'Cy"c\\le\n€'
_NAME += "x" * (63 - len(_NAME.encode()))


def _hostile_capture(pg_db: str, enum: bool) -> siret_summary.Config:
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=40, seed=23, sqlite_mess=False))
    execute(pg_db, f'ALTER TABLE "Tous_PV" RENAME COLUMN "Cycle" TO {_quoted(_NAME)}',
            f"ALTER TABLE invitations RENAME COLUMN siret TO {_quoted(_NAME)}")
    if enum:
        execute(pg_db, "CREATE TYPE adv11_cycle AS ENUM ('C3', 'C4', 'C5')",
                f'UPDATE "Tous_PV" SET {_quoted(_NAME)} = NULL WHERE {_quoted(_NAME)} NOT IN (\'C3\', \'C4\', \'C5\')',
                f'ALTER TABLE "Tous_PV" ALTER COLUMN {_quoted(_NAME)} TYPE adv11_cycle'
                f" USING {_quoted(_NAME)}::adv11_cycle")
    config = siret_summary.Config(target_table="summary_a11", state_table="summary_a11_state",
                                  pv_columns={"cycle": _NAME}, invitation_columns={"siret": _NAME})
    siret_summary.install_change_capture(pg_db, config=config)
    assert siret_summary.run(pg_db, config=config).mode == "full"
    return config


def test_capture_with_json_hostile_63_byte_mapped_column_names(pg_db):
    """Held: the mapped columns' names in the JSON array round-trip; capture runs, then DDL on one is seen."""
    config = _hostile_capture(pg_db, enum=False)
    execute(pg_db, 'UPDATE "Tous_PV" SET num_inscrits = 5000, "score_CGT" = 4000'
                   ' WHERE id_pv = (SELECT min(id_pv) FROM "Tous_PV")',
            "UPDATE invitations SET date_invit = '2026-06-06' WHERE id = (SELECT min(id) FROM invitations)")
    assert siret_summary.run(pg_db, config=config).mode == "capture"
    _assert_fresh(pg_db, config)
    execute(pg_db, f'ALTER TABLE "Tous_PV" DROP COLUMN {_quoted(_NAME)}',
            f"ALTER TABLE \"Tous_PV\" ADD COLUMN {_quoted(_NAME)} text DEFAULT 'C5'")
    assert siret_summary.run(pg_db, config=config, force=True).mode != "capture"
    _assert_fresh(pg_db, config)


def test_an_enum_under_a_json_hostile_mapped_column_name_is_refused(pg_db):
    """Held: the 'type defined in the database' check reads the name back from the JSON array."""
    config = _hostile_capture(pg_db, enum=True)
    result = siret_summary.run(pg_db, config=config, force=True)
    assert result.mode != "capture" and "type defined in the database" in (result.fallback or "")
    execute(pg_db, "ALTER TYPE adv11_cycle RENAME VALUE 'C4' TO 'not a cycle'")
    assert siret_summary.run(pg_db, config=config, force=True).mode != "capture"
    _assert_fresh(pg_db, config)


def test_a_row_security_policy_changed_under_a_captured_source_is_seen(pg_db, pg_uri):
    """Found by adv11 (older than session 8): CREATE/ALTER/DROP POLICY moves no pg_class, pg_attribute or
    pg_trigger row, so a role under row security stayed in capture mode and kept the rows a policy now hides.
    Row security active for the run's role on a captured table now keeps it from capture runs (it scans)."""
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=40, seed=5, sqlite_mess=False))
    role = f"adv11_{uuid.uuid4().hex[:8]}"
    execute(pg_uri, f"CREATE ROLE {role} LOGIN NOSUPERUSER", autocommit=True)
    siret_summary.install_change_capture(pg_db, config=CFG)
    execute(pg_db, f"GRANT CREATE, USAGE ON SCHEMA public TO {role}",
            f'GRANT SELECT ON "Tous_PV", invitations TO {role}',
            f"GRANT SELECT, DELETE ON siret_summary_changes TO {role}",
            f"GRANT SELECT, INSERT, UPDATE ON siret_summary_changes_cursor TO {role}",
            'ALTER TABLE "Tous_PV" ENABLE ROW LEVEL SECURITY',
            f'CREATE POLICY adv11_see ON "Tous_PV" FOR SELECT TO {role} USING (true)')
    app = _as(pg_db, role)
    try:
        modes = [siret_summary.run(app, config=CFG, force=True) for _ in range(2)]
        assert [r.mode for r in modes] == ["full", "incremental"]
        assert "row security applies" in (modes[1].fallback or "")
        execute(pg_db, "ALTER POLICY adv11_see ON \"Tous_PV\" USING (siret NOT LIKE '%1' AND siret NOT LIKE '%3')")
        siret_summary.run(app, config=CFG, force=True)
        _assert_fresh(pg_db, CFG, reader=app)
    finally:
        execute(pg_db, f"DROP OWNED BY {role}")
        execute(pg_uri, f"DROP ROLE {role}", autocommit=True)


# --- 3. seat floors by NumPy ---------------------------------------------------------------------------------


def _old_floor_expr(i: int) -> pl.Expr:
    """The Polars expression of 5fcd9c5 for ``_f{i}`` (from ``_p{i}`` and ``_sve``)."""
    p, sve = pl.col(f"_p{i}"), pl.col("_sve")
    guess = (p / sve).floor()
    exact = pl.when((guess + 1) * sve <= p).then(guess + 1).when(guess * sve > p).then(guess - 1).otherwise(guess)
    return (pl.when(sve > 0).then(exact).cast(pl.Int64, strict=False).fill_null(pl.when(sve > 0).then(0))
            .alias(f"_f{i}"))


_FINITE = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers(-50, 10**9).map(float),
                    st.sampled_from([0.0, -0.0, 5e-324, 2.0**53 + 2, 2.0**62, 0.6666666666666666, 9.333333333333334]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3).flatmap(lambda n: st.lists(st.tuples(_FINITE, *[_FINITE] * n), min_size=1, max_size=4)))
def test_numpy_floors_equal_the_old_expression_on_finite_values(rows):
    """Held: for finite ``_p`` and ``_sve`` (NULLs, 0, negatives, subnormals, 1e308) ``_float_floors`` is the
    old expression (Int64's minimum, -2**63, included)."""
    n = len(rows[0]) - 1
    frame = pl.DataFrame([pl.Series("_sve", [r[0] for r in rows], pl.Float64),
                          *(pl.Series(f"_p{i}", [r[i + 1] for r in rows], pl.Float64) for i in range(n))])
    old = frame.select(_old_floor_expr(i) for i in range(n))
    new = pl.DataFrame(seats._float_floors(frame, n))
    assert_frame_equal(new, old)


def _basis(sve, a, b, inscrits=11.0):
    elections = pl.LazyFrame({"k": [0], "carence": [False], "inscrits": [inscrits], "sve": [sve], "a": [a], "b": [b]},
                             schema_overrides={c: pl.Float64 for c in ("inscrits", "sve", "a", "b")})
    return seats.seat_basis(elections, key="k", voix=["a", "b"]).collect().row(0, named=True)


def test_floors_with_an_overflowing_voix_total_are_zero_and_seats_are_given():
    """Found by adv11, kept as decided (docs/decisions.md): on voix whose total overflows to inf (unreachable by
    compute: counts are capped at 1e9) the floors were -1 (Polars orders NaN above every number: 0·inf > p) and
    allocate_seats then raised ZeroDivisionError; NumPy's floors are 0 and the seats are handed out."""
    got = _basis(None, 1e308, 1e308)  # S = 1, total inf, _sve inf
    assert (got["_f0"], got["_f1"], got["_remaining"]) == (0, 0, 1)
    elections = pl.LazyFrame({"k": [0], "carence": [False], "inscrits": [11.0], "sve": [None], "a": [1e308],
                              "b": [1e308]}, schema_overrides={c: pl.Float64 for c in ("inscrits", "sve", "a", "b")})
    given = seats.allocate_seats(elections, key="k", voix=["a", "b"], out=["sa", "sb"]).collect().row(0)
    assert sum(v for v in given[1:] if v is not None) == 1


def test_a_floor_of_exactly_minus_two_to_the_63_is_the_old_one():
    """Found by adv11: a floor of exactly -2**63 (negative voix, direct calls only) became 0; Int64's minimum is
    in range and kept, as the old non-strict cast did."""
    got = _basis(1.0, -(2.0**63), None)
    assert (got["_f0"], got["_remaining"]) == (-(2**63), 1 + 2**63 - 2**64)  # Int64 wrapping, as before
    assert math.isfinite(got["_v0"])
