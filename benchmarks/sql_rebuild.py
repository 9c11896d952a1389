"""The in-database competitor: the summary's core columns rebuilt by one SQL statement on PostgreSQL.

What a DBA would write instead of a Python pipeline: ``DROP`` + ``CREATE TABLE
AS`` in one transaction over a ``WITH norm AS MATERIALIZED (...)`` CTE that
normalises every PV row once (regexp for SIRET and cycle, ``CASE`` over the
main date spellings with an impossible-date guard, Excel serials, comma
decimals and thousands spaces in counts), a window function (``rank()``) for
the latest election of each SIRET in each cycle, sums over that election's
rows (every college, unlike the legacy script), a pivot per cycle with
``FILTER``, and a ``FULL JOIN`` with the latest invitation per SIRET.

Core columns only: ``siret``, per cycle ``date_pv_cN``, ``inscrits_cN``,
``votants_cN``, ``<union>_voix_cN``, then ``statut_pap``, ``date_pv_max`` and
``date_pap_c5``. No seats, no lead-order attributes (``fd``, ``raison_sociale``
…), no rejection counts, no incremental state: it is a lower bound for what a
server-side rewrite costs, not a replacement.

    python benchmarks/sql_rebuild.py postgresql://user@host/db
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection, Sequence

from siret_summary.config import DEFAULT_CYCLES, DEFAULT_INVITATION_COLUMNS, DEFAULT_PV_COLUMNS, UNIONS, Cycle

PV_TABLE = "Tous_PV"
INVITATIONS_TABLE = "invitations"
TARGET = "siret_summary_sql"
#: Sorts and hashes in memory, as a DBA would set for this one transaction.
WORK_MEM = "256MB"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _siret_digits(column: str) -> str:
    trimmed = rf"btrim({column}::text, E' \t\n\r\f\x0b\u00a0')"
    return rf"regexp_replace(regexp_replace({trimmed}, '\.0$', ''), '[^0-9]', '', 'g')"


def _siret(digits: str) -> str:
    return f"(CASE WHEN length({digits}) BETWEEN 1 AND 14 THEN lpad({digits}, 14, '0') END)"


def _number(column: str, text: bool) -> str:
    """A count or a voix: native numbers as they are (NaN, infinities, negatives → NULL); text with
    ',' decimals or spaces as thousands separators parsed, anything else NULL."""
    if not text:
        return f"(CASE WHEN {column}::float8 >= 0 AND {column}::float8 < 'Infinity'::float8 THEN {column}::float8 END)"
    cleaned = rf"translate(btrim({column}), E', \u00a0\u202f', '.')"  # ',' → '.', spaces dropped
    return rf"(CASE WHEN {cleaned} ~ '^[0-9]+(\.[0-9]+)?$' THEN {cleaned}::float8 END)"


def build_sql(target: str = TARGET, cycles: Sequence[Cycle] = DEFAULT_CYCLES,
              text_columns: Collection[str] | None = None) -> list[str]:
    """The statements of the rebuild, to run in one transaction.

    ``text_columns``: the count/voix columns declared as text (parsed with ','
    decimals); None treats them all as text, the safe choice when the types
    are unknown. :func:`rebuild` asks the catalog, as a DBA knows the schema.
    """
    c = {k: _q(v) for k, v in DEFAULT_PV_COLUMNS.items()}
    ic = {k: _q(v) for k, v in DEFAULT_INVITATION_COLUMNS.items()}

    def number(logical: str) -> str:
        name = DEFAULT_PV_COLUMNS[logical]
        return _number(c[logical], text_columns is None or name in text_columns)

    voix = ",\n        ".join(f"{number(f'voix_{u}')} AS voix_{u}" for u in UNIONS)
    in_window = " OR ".join(
        f"(cycle = '{cy.label}' AND d BETWEEN DATE '{cy.first}' AND DATE '{cy.last}')" for cy in cycles
    )
    sums = ", ".join(f"sum(voix_{u}) AS voix_{u}" for u in UNIONS)
    pivot = []
    for cy in cycles:
        f = f"FILTER (WHERE cycle = '{cy.label}')"
        s = cy.suffix
        pivot += [f"max(d) {f} AS date_pv_{s}", f"max(inscrits) {f} AS inscrits_{s}",
                  f"max(votants) {f} AS votants_{s}"]
        pivot += [f"max(voix_{u}) {f} AS {u}_voix_{s}" for u in UNIONS]
    statut = ", ".join(f"CASE WHEN p.date_pv_{cy.suffix} IS NOT NULL THEN '{cy.label}' END" for cy in cycles)
    latest = ", ".join(f"p.date_pv_{cy.suffix}" for cy in cycles)
    columns = ["siret"]
    for cy in cycles:
        s = cy.suffix
        columns += [f"p.date_pv_{s}", f"p.inscrits_{s}", f"p.votants_{s}"]
        columns += [f"p.{u}_voix_{s}" for u in UNIONS]
    select = ",\n    ".join(columns)
    date = "ds"
    create = f"""
CREATE TABLE {_q(target)} AS
WITH raw AS MATERIALIZED (
    SELECT {c['id']} AS id,
        {_siret_digits(c['siret'])} AS sd,
        upper(btrim({c['cycle']}::text)) AS cy,
        regexp_match(upper(btrim({c['cycle']}::text)), '^(CYCLE|C)?\\s*0*([0-9]+)$') AS cm,
        btrim({c['date']}::text) AS ds,
        {number('inscrits')} AS inscrits,
        {number('votants')} AS votants,
        {voix}
    FROM {_q(PV_TABLE)}
),
parts AS MATERIALIZED (
    SELECT r.*, {_siret('sd')} AS siret,
        regexp_match({date}, '^([0-9]{{4}})[-/]([0-9]{{1,2}})[-/]([0-9]{{1,2}})([ T][0-9]{{1,2}}:[0-9]{{2}}(:[0-9]{{2}}(\\.[0-9]+)?)?)?$') AS iso,
        regexp_match({date}, '^([0-9]{{1,2}})[/.-]([0-9]{{1,2}})[/.-]([0-9]{{4}})( [0-9]{{1,2}}:[0-9]{{2}}(:[0-9]{{2}})?)?$') AS dmy,
        substring({date} from '^([0-9]+)(\\.0+)?$') AS serial
    FROM raw r
),
ymd AS MATERIALIZED (
    SELECT p.*,
        COALESCE(iso[1], dmy[3])::int AS y, COALESCE(iso[2], dmy[2])::int AS m, COALESCE(iso[3], dmy[1])::int AS dd
    FROM parts p
),
norm AS MATERIALIZED (
    SELECT id, siret,
        CASE WHEN cm IS NOT NULL THEN 'C' || cm[2] ELSE cy END AS cycle,
        CASE  -- nested CASEs: PostgreSQL does not promise to evaluate AND operands in order
            WHEN y IS NOT NULL THEN
                CASE WHEN m BETWEEN 1 AND 12 AND dd >= 1 AND y >= 1 THEN
                    CASE WHEN dd <= extract(day FROM make_date(y, m, 1) + interval '1 month' - interval '1 day')
                         THEN make_date(y, m, dd) END
                END
            WHEN length(serial) <= 6 THEN
                CASE WHEN serial::int BETWEEN 20000 AND 80000 THEN DATE '1899-12-30' + serial::int END
        END AS d,
        inscrits, votants, {", ".join(f"voix_{u}" for u in UNIONS)}
    FROM ymd
    WHERE siret IS NOT NULL
),
ranked AS (
    SELECT n.*, rank() OVER (PARTITION BY siret, cycle ORDER BY d DESC) AS rk
    FROM norm n
    WHERE {in_window}
),
elections AS (
    SELECT siret, cycle, max(d) AS d, sum(inscrits) AS inscrits, sum(votants) AS votants, {sums}
    FROM ranked WHERE rk = 1
    GROUP BY siret, cycle
),
pivot AS (
    SELECT siret,
        {", ".join(pivot)}
    FROM elections GROUP BY siret
),
invited AS (
    SELECT siret, max(d) AS date_pap_c5 FROM (
        SELECT {_siret(_siret_digits(ic['siret']))} AS siret, {ic['date']}::date AS d
        FROM {_q(INVITATIONS_TABLE)}
    ) i
    WHERE siret IS NOT NULL AND d IS NOT NULL
    GROUP BY siret
)
SELECT
    {select},
    COALESCE(NULLIF(concat_ws('+', {statut}), ''), 'Aucun') AS statut_pap,
    greatest({latest}) AS date_pv_max,
    i.date_pap_c5
FROM pivot p FULL JOIN invited i USING (siret)
"""
    return [f"SET LOCAL work_mem = '{WORK_MEM}'", f"DROP TABLE IF EXISTS {_q(target)}", create,
            f"ALTER TABLE {_q(target)} ADD PRIMARY KEY (siret)"]


def rebuild(uri: str, target: str = TARGET) -> int:
    """Rebuild ``target`` on the PostgreSQL database ``uri`` in one transaction; returns its rows."""
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(uri) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema()"
                f" AND table_name = '{PV_TABLE}' AND data_type IN ('text', 'character varying', 'character')"
            )
            text_columns = {row[0] for row in cur.fetchall()}
            for statement in build_sql(target, text_columns=text_columns):
                cur.execute(statement)
            cur.execute(f"SELECT count(*) FROM {_q(target)}")
            rows = cur.fetchone()[0]
        conn.commit()
    return int(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/sql_rebuild.py POSTGRESQL_URI")
    started = time.perf_counter()
    n = rebuild(sys.argv[1])
    print(f"{n} rows in {time.perf_counter() - started:.2f} s")
