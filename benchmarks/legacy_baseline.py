"""A legacy-style rebuild: the pandas script ``siret_summary`` replaces (SPEC §1), as a baseline.

Modelled on what that script does, step by step, so the benchmark compares the
library with the real thing rather than with a straw man or an idealised
rewrite:

1. ``pandas.read_sql`` of the needed columns of ``"Tous_PV"`` and
   ``invitations`` (psycopg on PostgreSQL, the stdlib ``sqlite3`` on SQLite);
2. per-row Python normalisation of the main fields (``Series.apply``): SIRET
   digits, cycle label, date (several ``strptime`` formats and Excel serials),
   and the counts (comma decimals);
3. per cycle: ``sort_values`` + ``drop_duplicates`` on the SIRET, which keeps
   *one* college of the latest election (the legacy bug: the other colleges of
   the election are lost — kept here on purpose);
4. row-by-row record building in a Python loop (``iterrows``) into one dict
   per SIRET, then the cross-cycle fields (``statut_pap``, ``date_pv_max``,
   ``cgt_implantee``, ``date_pap_c5``) in a second loop;
5. ``DELETE FROM`` the target, then ``INSERT`` in chunks of 2,000 rows with
   ``executemany`` and a commit per chunk (readers see an empty, then a
   half-filled table while it runs).

What it leaves out: the seat computation (the legacy app had switched it off
because it was too slow) and the bug that erased every PV date equal to any
invitation date (it would empty most of the table and so make the baseline
*faster* than the real script). Invitation-only SIRETs are dropped, as the
legacy script did.

It writes the core columns into its own table (``siret_summary_legacy`` by
default), never into the library's target.

    python benchmarks/legacy_baseline.py demo.db
    python benchmarks/legacy_baseline.py postgresql://user@host/db
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
import time
import warnings
from typing import Any

from siret_summary.config import DEFAULT_CYCLES, DEFAULT_INVITATION_COLUMNS, DEFAULT_PV_COLUMNS, UNIONS

PV_TABLE = "Tous_PV"
INVITATIONS_TABLE = "invitations"
TARGET = "siret_summary_legacy"
CHUNK = 2_000

_SIRET_NON_DIGITS = re.compile(r"\D")
_CYCLE = re.compile(r"^(CYCLE|C)?\s*0*(\d+)$")
_DATE_FORMATS = (
    "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d",
    "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M",
)
_EXCEL_EPOCH = dt.date(1899, 12, 30)


# ---------------------------------------------------------------- per-row helpers

def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def clean_siret(value: Any) -> str | None:
    if _missing(value):
        return None
    text = str(value).strip()
    if text.endswith(".0"):
        text = text[:-2]
    digits = _SIRET_NON_DIGITS.sub("", text)
    if not 1 <= len(digits) <= 14:
        return None
    return digits.zfill(14)


def clean_cycle(value: Any) -> str | None:
    if _missing(value):
        return None
    text = str(value).strip().upper()
    match = _CYCLE.match(text)
    return f"C{match.group(2)}" if match else text


def parse_date(value: Any) -> dt.date | None:
    if _missing(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    try:
        serial = float(text)
    except ValueError:
        return None
    if serial.is_integer() and 20_000 <= serial <= 80_000:
        return _EXCEL_EPOCH + dt.timedelta(days=int(serial))
    return None


def to_float(value: Any) -> float | None:
    if _missing(value):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
        if text.lower() in ("", "nan", "none", "null"):
            return None
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            return None
    if math.isnan(number) or math.isinf(number) or number < 0:
        return None
    return number


def _text(value: Any) -> str | None:
    if _missing(value):
        return None
    text = str(value).strip()
    return text or None


def _num(value: Any) -> float | None:
    return None if _missing(value) else float(value)


# ---------------------------------------------------------------------- columns

def target_columns() -> list[tuple[str, str]]:
    """(name, SQL type) of the table the baseline writes: the core legacy columns."""
    columns = [("siret", "TEXT PRIMARY KEY"), ("raison_sociale", "TEXT"), ("idcc", "TEXT"),
               ("cp", "TEXT"), ("ville", "TEXT"), ("region", "TEXT"), ("ul", "TEXT")]
    for cycle in DEFAULT_CYCLES:
        s = cycle.suffix
        columns += [(f"date_pv_{s}", "DATE"), (f"carence_{s}", "BOOLEAN"), (f"fd_{s}", "TEXT"),
                    (f"ud_{s}", "TEXT"), (f"inscrits_{s}", "DOUBLE PRECISION"),
                    (f"votants_{s}", "DOUBLE PRECISION")]
        columns += [(f"{u}_voix_{s}", "DOUBLE PRECISION") for u in UNIONS]
        columns.append((f"solidaire_voix_{s}", "DOUBLE PRECISION"))
    columns += [("statut_pap", "TEXT"), ("date_pv_max", "DATE"), ("cgt_implantee", "BOOLEAN"),
                ("date_pap_c5", "DATE")]
    return columns


def _select(table: str, columns: list[str]) -> str:
    return "SELECT " + ", ".join(f'"{c}"' for c in columns) + f' FROM "{table}"'


# ---------------------------------------------------------------------- the script

def build_records(pv, invitations) -> list[dict[str, Any]]:
    """Steps 2–4 on two pandas frames of raw columns; one dict per SIRET."""
    import pandas as pd

    c = DEFAULT_PV_COLUMNS
    pv = pv.copy()
    pv["siret_n"] = pv[c["siret"]].apply(clean_siret)
    pv["cycle_n"] = pv[c["cycle"]].apply(clean_cycle)
    pv["date_n"] = pv[c["date"]].apply(parse_date)
    for logical in ("inscrits", "votants", "sve"):
        pv[c[logical]] = pv[c[logical]].apply(to_float)
    for union in UNIONS:
        pv[c[f"voix_{union}"]] = pd.to_numeric(pv[c[f"voix_{union}"]], errors="coerce")
    pv = pv[pv["siret_n"].notna()]

    ic = DEFAULT_INVITATION_COLUMNS
    invitations = invitations.copy()
    invitations["siret_n"] = invitations[ic["siret"]].apply(clean_siret)
    invitations["date_n"] = invitations[ic["date"]].apply(parse_date)

    records: dict[str, dict[str, Any]] = {}
    for cycle in DEFAULT_CYCLES:
        s = cycle.suffix
        in_cycle = pv[(pv["cycle_n"] == cycle.label) & pv["date_n"].notna()]
        in_cycle = in_cycle[(in_cycle["date_n"] >= cycle.first) & (in_cycle["date_n"] <= cycle.last)]
        # The legacy bug: one row per SIRET, i.e. one college of the latest election.
        latest = in_cycle.sort_values(["siret_n", "date_n"], ascending=[True, False]).drop_duplicates(
            "siret_n", keep="first"
        )
        for _, row in latest.iterrows():
            record = records.setdefault(row["siret_n"], {"siret": row["siret_n"]})
            votants = row[c["votants"]]
            institution = _text(row[c["institution"]]) or ""
            record[f"date_pv_{s}"] = row["date_n"]
            record[f"inscrits_{s}"] = _num(row[c["inscrits"]])
            record[f"votants_{s}"] = _num(votants)
            record[f"carence_{s}"] = "car" in institution.lower() or _missing(votants) or votants <= 0
            record[f"fd_{s}"] = _text(row[c["fd"]])
            record[f"ud_{s}"] = _text(row[c["ud"]])
            for union in UNIONS:
                record[f"{union}_voix_{s}"] = _num(row[c[f"voix_{union}"]])
            record[f"solidaire_voix_{s}"] = record[f"sud_voix_{s}"]
            # Later cycles overwrite the establishment's attributes.
            for logical in ("raison_sociale", "idcc", "cp", "ville", "region", "ul"):
                value = _text(row[c[logical]])
                if value is not None:
                    record[logical] = value

    latest_invitation = invitations[invitations["siret_n"].notna()].groupby("siret_n")["date_n"].max()
    last = DEFAULT_CYCLES[-1].suffix
    for siret, record in records.items():
        dates = [record.get(f"date_pv_{cycle.suffix}") for cycle in DEFAULT_CYCLES]
        labels = [cycle.label for cycle, d in zip(DEFAULT_CYCLES, dates) if d is not None]
        record["statut_pap"] = "+".join(labels) if labels else "Aucun"
        record["date_pv_max"] = max((d for d in dates if d is not None), default=None)
        cgt = record.get(f"cgt_voix_{last}")
        record["cgt_implantee"] = cgt is not None and cgt > 0
        pap = latest_invitation.get(siret)
        record["date_pap_c5"] = None if pap is None or pd.isna(pap) else pap
    return list(records.values())


def _connect(source: str):
    if source.startswith(("postgresql://", "postgres://")):
        import psycopg

        return psycopg.connect(source), "%s", True
    import sqlite3

    path = source[len("sqlite:///"):] if source.startswith("sqlite:///") else source
    return sqlite3.connect(path), "?", False


def rebuild(source: str, target: str = TARGET) -> dict[str, Any]:
    """Run the legacy-style rebuild of ``target`` from the sources in ``source``.

    Returns the rows written and the seconds of each step (read, normalise +
    build = ``compute``, write).
    """
    import pandas as pd

    seconds: dict[str, float] = {}
    conn, placeholder, postgres = _connect(source)
    try:
        t0 = time.perf_counter()
        pv_columns = list(dict.fromkeys(DEFAULT_PV_COLUMNS.values()))
        inv_columns = list(dict.fromkeys(DEFAULT_INVITATION_COLUMNS.values()))
        with warnings.catch_warnings():  # pandas warns about non-SQLAlchemy connections
            warnings.simplefilter("ignore", UserWarning)
            pv = pd.read_sql(_select(PV_TABLE, pv_columns), conn)
            invitations = pd.read_sql(_select(INVITATIONS_TABLE, inv_columns), conn)
        seconds["read"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        records = build_records(pv, invitations)
        columns = target_columns()
        names = [name for name, _ in columns]
        rows = []
        for record in records:
            row = []
            for name in names:
                value = record.get(name)
                if isinstance(value, dt.date) and not postgres:
                    value = value.isoformat()
                row.append(value)
            rows.append(tuple(row))
        seconds["compute"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        cur = conn.cursor()
        cur.execute(f'CREATE TABLE IF NOT EXISTS "{target}" ('
                    + ", ".join(f'"{n}" {t}' for n, t in columns) + ")")
        cur.execute(f'DELETE FROM "{target}"')
        conn.commit()
        insert = (f'INSERT INTO "{target}" (' + ", ".join(f'"{n}"' for n in names) + ") VALUES ("
                  + ", ".join([placeholder] * len(names)) + ")")
        for start in range(0, len(rows), CHUNK):
            cur.executemany(insert, rows[start:start + CHUNK])
            conn.commit()
        cur.close()
        seconds["write"] = time.perf_counter() - t0
    finally:
        conn.close()
    return {"rows": len(rows), "seconds": seconds}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/legacy_baseline.py SQLITE_PATH_OR_POSTGRESQL_URI")
    started = time.perf_counter()
    outcome = rebuild(sys.argv[1])
    print(f"{outcome['rows']} rows in {time.perf_counter() - started:.2f} s "
          + ", ".join(f"{k} {v:.2f} s" for k, v in outcome["seconds"].items()))
