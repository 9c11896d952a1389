"""compute(): sources → summary DataFrame, no write (notebooks, checks)."""

from __future__ import annotations

from typing import Any

import polars as pl

from .config import Config, as_config
from .normalize import normalize_invitations, normalize_pv
from .read import RawSources, read_sources
from .summary import Report, parse_report, report_frame, summary_frame


def summarise(raw: RawSources, config: Config) -> tuple[pl.DataFrame, Report]:
    """Normalise and summarise raw frames: one lazy plan, collected once (with its report)."""
    # cache(): both frames feed several branches (elections, report); without it
    # the optimiser copies their large normalisation expressions into each one.
    pv = normalize_pv(raw.pv, config.pv_columns).cache()
    invitations = normalize_invitations(raw.invitations, config.invitation_columns).cache()
    # The in-memory engine: the data fits in memory by design (the sources are
    # Arrow tables already) and it measured faster than streaming here.
    summary, counts = pl.collect_all(
        [summary_frame(pv, invitations, config), report_frame(pv, invitations)], engine="in-memory"
    )
    return summary, parse_report(counts.row(0, named=True))


def compute(source: Any, *, config: Config | None = None) -> pl.DataFrame:
    """Compute the summary (SPEC §3–§4) without writing anything.

    ``source`` is a ``postgresql://`` URI, a SQLite file path or
    ``sqlite:///path``, or a mapping of table name → ``pyarrow.Table`` /
    ``polars.DataFrame`` / ``LazyFrame`` / Parquet path.

    Examples
    --------
    >>> import polars as pl, siret_summary
    >>> pv = pl.DataFrame({
    ...     "id_pv": [1, 2], "Cycle": ["C4", "cycle 4"], "siret": ["479 766 842 00724", "47976684200724.0"],
    ...     "date_scrutin": ["2022-03-14", "14/03/2022"], "institution": ["CSE", "CSE"],
    ...     "num_inscrits": [100.0, 40.0], "num_votants": [80.0, 30.0], "num_sve": [78.0, 30.0],
    ...     "score_CGT": [40.0, 10.0], "score_CFDT": [38.0, 20.0], "score_FO": [None, None],
    ...     "score_CFTC": [None, None], "score_CGC": [None, None], "score_UNSA": [None, None],
    ...     "score_SOLIDAIRE": [None, None], "score_AUTRE": [None, None],
    ...     "FD": ["FD A", None], "UD": ["75", None], "idcc": ["1486", None],
    ...     "raison_sociale": ["ACME", None], "cp": ["75001", None], "ville": ["Paris", None],
    ...     "Région": ["IDF", None], "UL": [None, None]})
    >>> df = siret_summary.compute({"Tous_PV": pv})
    >>> df.select("siret", "statut_pap", "inscrits_c4", "cgt_siege_c4", "cfdt_siege_c4").row(0)
    ('47976684200724', 'C4', 140.0, 3, 4)
    """
    config = as_config(config)
    return summarise(read_sources(source, config), config)[0]


def compute_report(source: Any, *, config: Config | None = None) -> dict[str, dict[str, int]]:
    """Rejected rows and warnings the computation would report, as ``{"rejected": ..., "warnings": ...}``."""
    config = as_config(config)
    report = summarise(read_sources(source, config), config)[1]
    return {"rejected": report.rejected, "warnings": report.warnings}
