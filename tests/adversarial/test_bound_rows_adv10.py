"""Adversarial (pass 10): the write's rows bound as arrays (``PostgresBackend.rows_bound``) against
hostile targets and sessions — row security, views, partitions, domains, unique indexes, AFTER
triggers, ``search_path`` and a host's ``unnest``, a low ``statement_timeout``, column names like the
statements' aliases.

Each attack runs the same incremental run twice on two copies of one database, rows bound then rows
staged (``rows_bound`` answering None), and compares the outcomes (counts and target, or the error's
type and sentence) — never the fast code against itself. Findings were ``xfail(strict=True)``: two fixed,
two documented (see each test).
"""

from __future__ import annotations

import re
import uuid

import pytest
from advutil import rows_bound_spy, rows_staged_only
from dbutil import execute, query, scalar
from watchutil import assert_target_is_reference

import siret_summary
from siret_summary.demo_data import generate, write_postgres

TABLE = "adv10_summary"
CFG = siret_summary.Config(target_table=TABLE)
CHANGE = ('UPDATE "Tous_PV" SET "score_CGT" = coalesce("score_CGT", 0) + 3 WHERE id_pv % 37 = 1',
          'DELETE FROM "Tous_PV" WHERE siret IN (SELECT siret FROM "Tous_PV" ORDER BY siret LIMIT 2)')


def _load(uri: str, n_pv: int = 300, seed: int = 10) -> None:
    write_postgres(uri, *generate(n_pv=n_pv, n_invitations=50, seed=seed, sqlite_mess=False))


_staged_only, _spy = rows_staged_only, rows_bound_spy


def _as(uri: str, role: str) -> str:
    return uri.replace("postgres:@", f"{role}:@")


#: The driver's words for a failed statement, with parameters (prepared) and without (bound / staged).
_DRIVER_WORDS = re.compile(r"Failed to execute prepared statement: PGRES_FATAL_ERROR"
                           r"|Execution error \[PGRES_FATAL_ERROR\]:")
RAW = False  # True: compare the driver's own words too (test_the_driver_words_in_a_refused_insert_are_the_same)


def _plain(error, db: str) -> str:
    """An error's first line, its database's URI and name made neutral (they differ between the copies)."""
    name = db.split("/")[-1].split("?")[0]
    line = str(error).split("\n")[0].replace(db, "DB").replace(name, "DB")
    return line if RAW else _DRIVER_WORDS.sub("<driver>", line)


def _outcome(db: str, run_uri: str, config):
    try:
        result = siret_summary.run(run_uri, config=config, mode="incremental")
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the error itself
        return ("raised", type(exc).__name__, _plain(exc, db)), None
    if result.status != "completed":
        return ("failed", result.status, _plain(result.error, db)), None
    target = query(db, f"SELECT * FROM {config.target_table} ORDER BY siret")
    return ("completed", result.mode, result.rows, result.inserted, result.updated, result.deleted), target


def _bound_vs_staged(pg_uri, monkeypatch, prepare=(), change=CHANGE, config=CFG, bind=True, setup=None,
                     as_role=None, after_full=()):
    """The same incremental run on two copies of one database, rows bound then staged: each run's
    outcome (counts or error) and target. ``bind``: whether the bound run must bind (True), must not
    (False) or either (None). ``setup(db)`` runs before the full run; ``as_role(db)`` gives the URI the
    incremental run uses."""
    from conftest import fresh_database

    out = []
    for bound in (True, False):
        with fresh_database(pg_uri, "adv10") as db:
            _load(db)
            if setup is not None:
                setup(db)
            assert siret_summary.run(db, config=config, mode="full").status == "completed"
            if prepare:
                execute(db, *prepare)
            if change:
                execute(db, *change)
            run_uri = as_role(db) if as_role is not None else db
            for sql in after_full:
                execute(db, sql)
            if bound:
                used = _spy(monkeypatch)
            else:
                _staged_only(monkeypatch)
            outcome, target = _outcome(db, run_uri, config)
            monkeypatch.undo()
            if bound and bind is not None:
                assert any(used) == bind, (used, outcome)
            out.append((outcome, target))
    (a, ta), (b, tb) = out
    assert a == b
    assert (ta is None) == (tb is None)
    if ta is not None:
        assert ta.equals(tb, null_equal=True)
    return a, ta


# --- search_path and a host's unnest -------------------------------------------------------------------


_HOST_UNNEST = {
    "integer": "CREATE FUNCTION {schema}.unnest(integer[]) RETURNS SETOF integer LANGUAGE sql"
               " AS 'SELECT x + 1000 FROM pg_catalog.unnest($1) AS x'",
    "double": "CREATE FUNCTION {schema}.unnest(double precision[]) RETURNS SETOF double precision LANGUAGE sql"
              " AS 'SELECT x * 2 FROM pg_catalog.unnest($1) AS x'",
    "date": "CREATE FUNCTION {schema}.unnest(date[]) RETURNS SETOF date LANGUAGE sql"
            " AS 'SELECT x + 1 FROM pg_catalog.unnest($1) AS x'",
    "boolean": "CREATE FUNCTION {schema}.unnest(boolean[]) RETURNS SETOF boolean LANGUAGE sql"
               " AS 'SELECT NOT x FROM pg_catalog.unnest($1) AS x'",
    "bigint": "CREATE FUNCTION {schema}.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE sql"
              " AS 'SELECT x + 1000 FROM pg_catalog.unnest($1) AS x'",
}


@pytest.mark.parametrize("kind", sorted(_HOST_UNNEST))
def test_a_host_unnest_in_public_for_one_array_type(pg_uri, monkeypatch, kind):
    """Holds: a host's ``public.unnest(integer[])`` etc. (an exact match would beat pg_catalog's polymorphic
    one, but the parser expands a many-argument unnest into pg_catalog.unnest calls)."""
    _bound_vs_staged(pg_uri, monkeypatch, (_HOST_UNNEST[kind].format(schema="public"),), bind=True)


def _evil_first(db: str, function: str) -> None:
    name = scalar(db, "SELECT current_database()")
    execute(db, "CREATE SCHEMA evil", function,
            f'ALTER DATABASE "{name}" SET search_path = evil, pg_catalog, "$user", public')


def test_a_host_unnest_in_a_schema_first_on_the_search_path(pg_uri, monkeypatch):
    """Holds: a schema before pg_catalog on the database's search_path, holding unnest(integer[]) and
    unnest(text[], integer[]) (the bound rows' many-argument unnest stays pg_catalog's)."""
    def setup(db):
        _evil_first(db, _HOST_UNNEST["integer"].format(schema="evil"))
        execute(db, "CREATE FUNCTION evil.unnest(text[], integer[]) RETURNS TABLE (a text, b integer) LANGUAGE sql"
                    " AS 'SELECT NULL::text, NULL::integer'")
    _bound_vs_staged(pg_uri, monkeypatch, setup=setup, bind=True)


def test_a_host_unnest_anyarray_first_on_the_search_path_hides_the_sources(pg_db):
    """Broke (adv10 finding 4, fixed: pg_catalog.unnest): evil.unnest(anyarray) before pg_catalog on the search_path
    made describe_many see no 'invitations'."""
    _load(pg_db)
    _evil_first(pg_db, "CREATE FUNCTION evil.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE sql"
                       " AS 'SELECT x FROM pg_catalog.unnest($1) AS x LIMIT 1'")
    assert siret_summary.run(pg_db, config=CFG, mode="full").status == "completed"
    assert_target_is_reference(pg_db, table=TABLE)


# --- target shapes ------------------------------------------------------------------------------------

_PARTITIONED = (
    f"ALTER TABLE {TABLE} RENAME TO adv10_old",
    f"CREATE TABLE {TABLE} (LIKE adv10_old INCLUDING ALL) PARTITION BY HASH (siret)",
    *(f"CREATE TABLE adv10_p{i} PARTITION OF {TABLE} FOR VALUES WITH (MODULUS 3, REMAINDER {i})" for i in range(3)),
    f"INSERT INTO {TABLE} SELECT * FROM adv10_old",
    "DROP TABLE adv10_old CASCADE",
)

_SHAPES = {
    "hash_partitioned": _PARTITIONED,
    "unique_index_elsewhere": (f"CREATE UNIQUE INDEX adv10_u ON {TABLE} ((coalesce(ville, '') || siret))",
                               f"CREATE UNIQUE INDEX adv10_u2 ON {TABLE} (lower(siret))"),
    "alias_named_columns": (f'ALTER TABLE {TABLE} ADD COLUMN u text, ADD COLUMN s integer, ADD COLUMN g text,'
                            ' ADD COLUMN t boolean, ADD COLUMN "U" text, ADD COLUMN "we ird""q" text,'
                            ' ADD COLUMN "SIRET" text, ADD COLUMN replaced boolean',),
    "array_column": (f"ALTER TABLE {TABLE} ALTER COLUMN inscrits_c4 TYPE integer[] USING ARRAY[inscrits_c4]",),
    "text_array_ville": (f"ALTER TABLE {TABLE} ALTER COLUMN ville TYPE text[] USING ARRAY[ville]",),
    "c_collation_siret": (f'ALTER TABLE {TABLE} ALTER COLUMN siret TYPE text COLLATE "C"',),
    "unlogged": (f"ALTER TABLE {TABLE} SET UNLOGGED",),
    "siret_as_name_type": (f"ALTER TABLE {TABLE} ALTER COLUMN siret TYPE name",),
}


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_target_shapes_give_the_same_run_bound_or_staged(pg_uri, monkeypatch, shape):
    """Holds: a partitioned target, unique indexes elsewhere, columns named like the aliases, array / collated /
    name columns — rows bound, same run."""
    _bound_vs_staged(pg_uri, monkeypatch, _SHAPES[shape], bind=True)


_GUARDED = {
    "row_security_forced": (f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY",
                            f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY",
                            f"CREATE POLICY adv10_p ON {TABLE} USING (siret NOT LIKE '%1')"),
    "after_trigger_elsewhere": (
        "CREATE TABLE adv10_audit (siret text, op text)",
        "CREATE FUNCTION adv10_aud() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO adv10_audit VALUES (coalesce(NEW.siret, OLD.siret), TG_OP); RETURN NULL; END $$",
        f"CREATE TRIGGER adv10_aud AFTER INSERT OR DELETE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION adv10_aud()"),
    "domain_check": ("CREATE DOMAIN adv10_pos AS integer CHECK (VALUE >= 0)",
                     f"ALTER TABLE {TABLE} ALTER COLUMN inscrits_c4 TYPE adv10_pos"),
    "enum_column": ("CREATE TYPE adv10_e AS ENUM ('false', 'true')",
                    f"ALTER TABLE {TABLE} ALTER COLUMN carence_c4 TYPE adv10_e USING carence_c4::text::adv10_e"),
    "partition_with_trigger": (*_PARTITIONED,
        "CREATE FUNCTION adv10_up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " NEW.ville := upper(NEW.ville); RETURN NEW; END $$",
        "CREATE TRIGGER adv10_up BEFORE INSERT ON adv10_p1 FOR EACH ROW EXECUTE FUNCTION adv10_up()"),
}


@pytest.mark.parametrize("shape", sorted(_GUARDED))
def test_guarded_targets_are_staged_and_give_the_same_run(pg_uri, monkeypatch, shape):
    """Holds: row security, an AFTER trigger, a domain with a CHECK, an enum, a trigger on one partition — staged."""
    _bound_vs_staged(pg_uri, monkeypatch, _GUARDED[shape], bind=False)



def test_a_host_identity_column_gets_the_same_values_and_rows_otherwise(pg_uri, monkeypatch):
    """Holds: apart from which SIRET gets which number, the identity column's target is the staged one. (adv10
    finding 1: which new row gets which number differs — the insert's row order is the plan's in both paths,
    specified by neither; docs/decisions.md, "A few rows bound, not staged".)"""
    from conftest import fresh_database

    got = []
    for bound in (True, False):
        with fresh_database(pg_uri, "adv10") as db:
            _load(db)
            assert siret_summary.run(db, config=CFG, mode="full").status == "completed"
            execute(db, f"ALTER TABLE {TABLE} ADD COLUMN host_id bigint GENERATED ALWAYS AS IDENTITY", *CHANGE)
            used = _spy(monkeypatch) if bound else _staged_only(monkeypatch)
            outcome, _ = _outcome(db, db, CFG)
            monkeypatch.undo()
            assert not bound or any(used)
            got.append((outcome, query(db, f"SELECT * FROM {TABLE} ORDER BY siret").drop("host_id"),
                        sorted(query(db, f"SELECT host_id FROM {TABLE}").get_column("host_id").to_list())))
    assert got[0][0] == got[1][0] and got[0][2] == got[1][2]
    assert got[0][1].equals(got[1][1], null_equal=True)


# --- the insert failing: the error bound and staged ---------------------------------------------------

_FAILING = {
    "no_partition_for_some_sirets": (
        f"ALTER TABLE {TABLE} RENAME TO adv10_old",
        f"CREATE TABLE {TABLE} (LIKE adv10_old INCLUDING ALL) PARTITION BY RANGE (siret)",
        f"CREATE TABLE adv10_low PARTITION OF {TABLE} FOR VALUES FROM (MINVALUE) TO ('5')",
        f"INSERT INTO {TABLE} SELECT * FROM adv10_old WHERE siret < '5'",
        "DROP TABLE adv10_old CASCADE"),
    "unique_violation_on_a_host_column": (
        f"ALTER TABLE {TABLE} ADD COLUMN host_k integer UNIQUE",
        f"UPDATE {TABLE} SET host_k = 7 WHERE siret = (SELECT max(siret) FROM {TABLE})",
        f"ALTER TABLE {TABLE} ALTER COLUMN host_k SET DEFAULT 7"),
    "not_null_host_column": (f"ALTER TABLE {TABLE} ADD COLUMN host_nn text NOT NULL DEFAULT 'x'",
                             f"ALTER TABLE {TABLE} ALTER COLUMN host_nn DROP DEFAULT"),
    "check_rejecting_new_rows": (f"ALTER TABLE {TABLE} ADD CONSTRAINT adv10_neg CHECK (inscrits_c4 IS NULL"
                                 " OR inscrits_c4 < 0) NOT VALID",),
    "foreign_key_elsewhere": ("CREATE TABLE adv10_known (siret text PRIMARY KEY)",
                              f"INSERT INTO adv10_known SELECT siret FROM {TABLE} ORDER BY siret LIMIT 20",
                              f"ALTER TABLE {TABLE} ADD CONSTRAINT adv10_fk FOREIGN KEY (siret)"
                              " REFERENCES adv10_known (siret) NOT VALID"),
}


@pytest.mark.parametrize("case", sorted(_FAILING))
def test_a_refused_insert_fails_the_same_bound_or_staged(pg_uri, monkeypatch, case):
    """A missing partition, a unique / NOT NULL / CHECK / foreign key violation: the same error either way."""
    outcome, _ = _bound_vs_staged(pg_uri, monkeypatch, _FAILING[case], bind=True)
    print(outcome)


def test_the_driver_words_in_a_refused_insert_are_the_same(pg_uri, monkeypatch):
    """Broke (adv10 finding 2, cosmetic, fixed in driver_reason): a unique violation's TargetError sentence
    differed bound/staged in the quoted driver text."""
    global RAW
    RAW = True
    try:
        _bound_vs_staged(pg_uri, monkeypatch, _FAILING["unique_violation_on_a_host_column"], bind=True)
    finally:
        RAW = False


# --- a view, roles, session settings -------------------------------------------------------------------

_VIEW = (
    f"ALTER TABLE {TABLE} RENAME TO adv10_base",
    f"CREATE VIEW {TABLE} AS SELECT * FROM adv10_base",
    "CREATE FUNCTION adv10_ins() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " INSERT INTO adv10_base SELECT (NEW).*; RETURN NEW; END $$",
    "CREATE FUNCTION adv10_del() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " DELETE FROM adv10_base WHERE siret = OLD.siret; RETURN OLD; END $$",
    f"CREATE TRIGGER adv10_ins INSTEAD OF INSERT ON {TABLE} FOR EACH ROW EXECUTE FUNCTION adv10_ins()",
    f"CREATE TRIGGER adv10_del INSTEAD OF DELETE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION adv10_del()",
)


def test_a_view_with_instead_of_triggers_is_staged_and_gives_the_same_run(pg_uri, monkeypatch):
    """Holds: a target that is a view writing through INSTEAD OF triggers — staged, same run."""
    _bound_vs_staged(pg_uri, monkeypatch, _VIEW, bind=False)


def _owner_role(pg_uri: str):
    """A setup making a non-superuser role (pg_monitor: row versions) own the sources; the role's name."""
    role = f"adv10_{uuid.uuid4().hex[:8]}"
    execute(pg_uri, f"CREATE ROLE {role} LOGIN NOSUPERUSER", f"GRANT pg_monitor TO {role}", autocommit=True)

    def setup(db):
        name = scalar(db, "SELECT current_database()")
        execute(db, f'GRANT CREATE, TEMP ON DATABASE "{name}" TO {role}', f"GRANT ALL ON SCHEMA public TO {role}",
                f'ALTER TABLE "Tous_PV" OWNER TO {role}', f"ALTER TABLE invitations OWNER TO {role}")
    return role, setup


def _full_as(role):
    def run_full_as_role(db):
        assert siret_summary.run(_as(db, role), config=CFG, mode="full").status == "completed"
    return run_full_as_role


def test_a_non_superuser_owner_binds_and_gives_the_same_run(pg_uri, monkeypatch):
    """Holds: the whole cycle as a non-superuser owner with pg_monitor (row versions, rows bound)."""
    role, setup = _owner_role(pg_uri)
    _bound_vs_staged(pg_uri, monkeypatch, setup=lambda db: (setup(db), _full_as(role)(db)),
                     as_role=lambda db: _as(db, role), bind=True)


def test_forced_row_security_for_a_non_superuser_owner_is_staged_the_same(pg_uri, monkeypatch):
    """Holds: FORCE ROW LEVEL SECURITY, a policy hiding some rows and refusing others, the owner not a superuser."""
    role, setup = _owner_role(pg_uri)
    rls = (f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY", f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY",
           f"CREATE POLICY adv10_see ON {TABLE} FOR SELECT USING (siret NOT LIKE '%1')",
           f"CREATE POLICY adv10_del ON {TABLE} FOR DELETE USING (siret NOT LIKE '%2')",
           f"CREATE POLICY adv10_ins ON {TABLE} FOR INSERT WITH CHECK (siret NOT LIKE '%3')")
    _bound_vs_staged(pg_uri, monkeypatch, setup=lambda db: (setup(db), _full_as(role)(db)),
                     after_full=rls, as_role=lambda db: _as(db, role), bind=False)


def test_a_role_without_temp_privilege_bound_matches_the_reference(pg_db, pg_uri, monkeypatch):
    """Holds: the bound run of a role without TEMP (which staging refuses) writes the reference's rows. (adv10
    finding 3: so such a role's run completes for a few rows and is refused above 1,000 — documented.)"""
    role, setup = _owner_role(pg_uri)
    _load(pg_db)
    setup(pg_db)
    _full_as(role)(pg_db)
    name = scalar(pg_db, "SELECT current_database()")
    execute(pg_db, f'REVOKE TEMP ON DATABASE "{name}" FROM PUBLIC', f'REVOKE TEMP ON DATABASE "{name}" FROM {role}',
            *CHANGE)
    used = _spy(monkeypatch)
    result = siret_summary.run(_as(pg_db, role), config=CFG, mode="incremental")
    assert result.status == "completed" and any(used), result.error
    assert_target_is_reference(pg_db, table=TABLE)
    _staged_only(monkeypatch)
    execute(pg_db, 'UPDATE "Tous_PV" SET "score_CGT" = coalesce("score_CGT", 0) + 1 WHERE id_pv % 31 = 2')
    with pytest.raises(siret_summary.TargetError) as raised:
        siret_summary.run(_as(pg_db, role), config=CFG, mode="incremental")
    print(raised.value)


def test_a_role_search_path_with_a_host_unnest_first(pg_uri, monkeypatch):
    """Holds: ALTER ROLE … SET search_path = evil, pg_catalog, public with evil.unnest(integer[]) / (date[])."""
    role, setup = _owner_role(pg_uri)

    def evil(db):
        name = scalar(db, "SELECT current_database()")
        execute(db, "CREATE SCHEMA evil", f"GRANT ALL ON SCHEMA evil TO {role}",
                _HOST_UNNEST["integer"].format(schema="evil"), _HOST_UNNEST["date"].format(schema="evil"),
                f'ALTER ROLE {role} IN DATABASE "{name}" SET search_path = evil, pg_catalog, public')
    _bound_vs_staged(pg_uri, monkeypatch, setup=lambda db: (setup(db), evil(db), _full_as(role)(db)),
                     as_role=lambda db: _as(db, role), bind=True)


_RETYPES = [
    f"ALTER TABLE {TABLE} ALTER COLUMN ville TYPE varchar(5) USING left(ville, 5)",
    f'ALTER TABLE {TABLE} ALTER COLUMN ville TYPE "char" USING left(ville, 1)::"char"',
    f"ALTER TABLE {TABLE} ALTER COLUMN ville TYPE jsonb USING to_jsonb(ville)",
    f"ALTER TABLE {TABLE} ALTER COLUMN inscrits_c4 TYPE oid USING abs(inscrits_c4)::bigint::oid",
    f"ALTER TABLE {TABLE} ALTER COLUMN inscrits_c4 TYPE money USING inscrits_c4::numeric::money",
    f"DROP VIEW IF EXISTS {TABLE}_c4 CASCADE; ALTER TABLE {TABLE} ALTER COLUMN date_pv_c4 TYPE text",
    f"DROP VIEW IF EXISTS {TABLE}_c4 CASCADE; ALTER TABLE {TABLE} ALTER COLUMN date_pv_c4 TYPE timestamptz",
    f"ALTER TABLE {TABLE} ALTER COLUMN carence_c4 TYPE integer USING carence_c4::int",
    f"ALTER TABLE {TABLE} ALTER COLUMN siret TYPE bytea USING convert_to(siret, 'UTF8')",
]


@pytest.mark.parametrize("ddl", _RETYPES)
def test_more_host_retypes_give_the_same_run_bound_or_staged(pg_uri, monkeypatch, ddl):
    """varchar(5), "char", jsonb, oid, money, a text or timestamptz date, an integer flag, a bytea SIRET."""
    _bound_vs_staged(pg_uri, monkeypatch, tuple(ddl.split("; ")), bind=None)
