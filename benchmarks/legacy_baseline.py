"""A model of the legacy rebuild script ``siret_summary`` replaces (SPEC §1), as a baseline.

It does what that script does, no more, so that the benchmark's legacy ÷
library ratio is the one a user of the application would see:

1. ``pandas.read_sql`` through SQLAlchemy (``sqlite3`` on SQLite; psycopg2,
   SQLAlchemy's default PostgreSQL driver, when installed, else psycopg 3) of
   the needed columns of ``"Tous_PV"`` and of *every* column of
   ``invitations``;
2. SIRETs and counts normalised by a Python function mapped over each column's
   values (``Series.map``, not per row of the frame); the cycle label with
   vectorised string methods; ``pd.to_datetime(errors="coerce")`` on the date
   column as a whole (pandas infers *one* format from the first value, so
   dates written another way become NaT, as in the real script);
3. per cycle a boolean mask, ``sort_values`` + ``drop_duplicates("siret")``,
   which keeps *one* college of the latest election (the legacy bug, kept on
   purpose); an outer ``merge`` of the cycles; ``fillna`` chains for the
   attributes (latest cycle first) and vectorised cross-cycle fields
   (``statut_pap``, ``date_pv_max``, ``cgt_implantee``, ``date_pap_c5``);
4. records from ``to_dict("records")``, each value converted in a Python loop
   (NaN → None, Timestamp → date);
5. ``DELETE FROM`` the target, then ``executemany`` INSERTs (a textual
   ``INSERT`` executed with a list of parameter sets) in chunks of 2,000 rows
   with a commit per chunk (readers see an empty, then a half-filled table
   while it runs).

What it leaves out: the seat computation (the legacy app had switched it off
because it was too slow), the ORM (the real script writes through a Session;
this one through a SQLAlchemy connection, same driver calls) and the bug that
erased every PV date equal to any invitation date (it would empty most of the
table and so make the baseline *faster* than the real script). Invitation-only
SIRETs are dropped, as the legacy script did.

It writes the core columns into its own table (``siret_summary_legacy`` by
default), never into the library's target. ``benchmarks/bench.py
--legacy-app PATH`` times the application's own code beside it.

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
_CYCLE = r"^(?:CYCLE|C)?\s*0*(\d+)$"
_ATTRIBUTES = ("raison_sociale", "idcc", "cp", "ville", "region", "ul")
_COUNTS = ("inscrits", "votants", "sve") + tuple(f"voix_{u}" for u in UNIONS)


# ---------------------------------------------------------------- per-value helpers

def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def clean_siret(value: Any) -> str | None:
    """The script's SIRET cleaning, mapped over the column's values."""
    if _missing(value):
        return None
    text = str(value).strip()
    if text.endswith(".0"):
        text = text[:-2]
    digits = _SIRET_NON_DIGITS.sub("", text)
    if not 1 <= len(digits) <= 14:
        return None
    return digits.zfill(14)


def to_float(value: Any) -> float | None:
    """The script's count parsing (comma decimals), mapped over the column's values."""
    if _missing(value):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().replace("\u00a0", "").replace(" ", "")
        if text.lower() in ("", "nan", "none", "null"):
            return None
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            return None
    if math.isnan(number) or math.isinf(number) or number < 0:
        return None
    return number


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


def _select(table: str, columns: list[str] | None) -> str:
    cols = "*" if columns is None else ", ".join(f'"{c}"' for c in columns)
    return f'SELECT {cols} FROM "{table}"'


def sqlalchemy_url(source: str) -> str:
    """The SQLAlchemy URL of a benchmark source (SQLite path or ``postgresql://`` URI).

    PostgreSQL goes through psycopg2 (SQLAlchemy's default driver for
    ``postgresql://``, what an application of that era runs) when it is
    installed, else psycopg 3.
    """
    import importlib.util

    if source.startswith(("postgresql://", "postgres://")):
        driver = "psycopg2" if importlib.util.find_spec("psycopg2") else "psycopg"
        return f"postgresql+{driver}://" + source.split("://", 1)[1]
    if source.startswith("sqlite:///"):
        return source
    return f"sqlite:///{source}"


# ---------------------------------------------------------------------- the script

def build_rows(pv, invitations, *, iso_dates: bool = False) -> list[dict[str, Any]]:
    """Steps 2–4 on the two frames ``read_sql`` returned; one parameter dict per SIRET."""
    import pandas as pd

    c = DEFAULT_PV_COLUMNS
    ic = DEFAULT_INVITATION_COLUMNS
    # 2. normalisation: Python functions mapped over columns, dates as a whole column.
    pv["siret_n"] = pv[c["siret"]].map(clean_siret)
    for logical in _COUNTS:
        pv[c[logical]] = pv[c[logical]].map(to_float).astype("float64")
    pv["cycle_n"] = pv[c["cycle"]].str.strip().str.upper().str.replace(_CYCLE, r"C\1", regex=True)
    with warnings.catch_warnings():  # "Could not infer format": the script's dates, as they come
        warnings.simplefilter("ignore", UserWarning)
        pv["date_n"] = pd.to_datetime(pv[c["date"]], errors="coerce")
        invitations["date_n"] = pd.to_datetime(invitations[ic["date"]], errors="coerce")
    invitations["siret_n"] = invitations[ic["siret"]].map(clean_siret)
    pv = pv[pv["siret_n"].notna()]

    # 3. per cycle: mask, latest election, one row per SIRET (one college: the legacy bug).
    frames = []
    for cycle in DEFAULT_CYCLES:
        s = cycle.suffix
        mask = ((pv["cycle_n"] == cycle.label) & (pv["date_n"] >= pd.Timestamp(cycle.first))
                & (pv["date_n"] <= pd.Timestamp(cycle.last)))
        latest = pv[mask].sort_values("date_n", ascending=False).drop_duplicates("siret_n")
        frame = pd.DataFrame({"siret": latest["siret_n"], f"date_pv_{s}": latest["date_n"]})
        votants = latest[c["votants"]]
        frame[f"carence_{s}"] = (latest[c["institution"]].str.contains("car", case=False, na=False)
                                 | votants.isna() | (votants <= 0))
        frame[f"fd_{s}"] = latest[c["fd"]]
        frame[f"ud_{s}"] = latest[c["ud"]]
        frame[f"inscrits_{s}"] = latest[c["inscrits"]]
        frame[f"votants_{s}"] = votants
        for union in UNIONS:
            frame[f"{union}_voix_{s}"] = latest[c[f"voix_{union}"]]
        frame[f"solidaire_voix_{s}"] = frame[f"sud_voix_{s}"]
        for logical in _ATTRIBUTES:
            frame[f"{logical}_{s}"] = latest[c[logical]]
        frames.append(frame)
    summary = frames[0]
    for frame in frames[1:]:
        summary = summary.merge(frame, on="siret", how="outer")

    suffixes = [cycle.suffix for cycle in DEFAULT_CYCLES]
    for logical in _ATTRIBUTES:  # latest cycle first
        value = summary[f"{logical}_{suffixes[-1]}"]
        for s in reversed(suffixes[:-1]):
            value = value.fillna(summary[f"{logical}_{s}"])
        summary[logical] = value
    statut = pd.Series("", index=summary.index, dtype=object)
    for cycle in DEFAULT_CYCLES:
        held = summary[f"date_pv_{cycle.suffix}"].notna()
        statut = statut.where(~held, statut.where(statut == "", statut + "+") + cycle.label)
    summary["statut_pap"] = statut.where(statut != "", "Aucun")
    summary["date_pv_max"] = summary[[f"date_pv_{s}" for s in suffixes]].max(axis=1)
    summary["cgt_implantee"] = summary[f"cgt_voix_{suffixes[-1]}"].fillna(0) > 0
    latest_invitation = invitations[invitations["siret_n"].notna()].groupby("siret_n")["date_n"].max()
    summary["date_pap_c5"] = summary["siret"].map(latest_invitation)

    # 4. records, value by value.
    names = [name for name, _ in target_columns()]
    rows = []
    for record in summary[names].to_dict("records"):
        row = {}
        for name, value in record.items():
            if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
                value = None
            elif isinstance(value, dt.datetime):  # a pandas Timestamp
                value = value.date().isoformat() if iso_dates else value.date()
            row[name] = value
        rows.append(row)
    return rows


def rebuild(source: str, target: str = TARGET) -> dict[str, Any]:
    """Run the legacy-style rebuild of ``target`` from the sources in ``source``.

    Returns the rows written and the seconds of each step (read, normalise +
    build = ``compute``, write).
    """
    import pandas as pd
    import sqlalchemy as sa

    seconds: dict[str, float] = {}
    engine = sa.create_engine(sqlalchemy_url(source))
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            t0 = time.perf_counter()
            pv_columns = list(dict.fromkeys(DEFAULT_PV_COLUMNS.values()))
            pv = pd.read_sql(sa.text(_select(PV_TABLE, pv_columns)), conn)
            invitations = pd.read_sql(sa.text(_select(INVITATIONS_TABLE, None)), conn)
            conn.rollback()
            seconds["read"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            rows = build_rows(pv, invitations, iso_dates=sqlite)
            seconds["compute"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            columns = target_columns()
            names = [name for name, _ in columns]
            conn.execute(sa.text(f'CREATE TABLE IF NOT EXISTS "{target}" ('
                                 + ", ".join(f'"{n}" {t}' for n, t in columns) + ")"))
            conn.execute(sa.text(f'DELETE FROM "{target}"'))
            conn.commit()
            insert = sa.text(f'INSERT INTO "{target}" (' + ", ".join(f'"{n}"' for n in names) + ") VALUES ("
                             + ", ".join(f":{n}" for n in names) + ")")
            for start in range(0, len(rows), CHUNK):
                conn.execute(insert, rows[start:start + CHUNK])  # executemany
                conn.commit()
            seconds["write"] = time.perf_counter() - t0
    finally:
        engine.dispose()
    return {"rows": len(rows), "seconds": seconds}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/legacy_baseline.py SQLITE_PATH_OR_POSTGRESQL_URI")
    started = time.perf_counter()
    outcome = rebuild(sys.argv[1])
    print(f"{outcome['rows']} rows in {time.perf_counter() - started:.2f} s "
          + ", ".join(f"{k} {v:.2f} s" for k, v in outcome["seconds"].items()))
