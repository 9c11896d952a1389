"""The two source tables, generated: establishments, their elections, PV rows, invitations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

import polars as pl
import pyarrow as pa

from siret_summary.demo_data.mess import (
    _CYCLE_FORM_WEIGHTS,
    _DATE_FORM_WEIGHTS,
    _SIRET_FORM_WEIGHTS,
    _canonical_sirets,
    _days,
    _Draws,
    _log_uniform,
    _messy_count,
    _messy_cycle,
    _messy_date,
    _messy_siret,
    _messy_text,
)
from siret_summary.demo_data.schema import _declared_columns
from siret_summary.demo_data.vocabulary import (
    _ARROW_TYPES,
    _COLLEGES,
    _COMPANY_NAMES,
    _COMPANY_PREFIXES,
    _COMPANY_SUFFIXES,
    _CYCLE_PATTERN_WEIGHTS,
    _CYCLE_PATTERNS,
    _CYCLE_WINDOWS,
    _FEDERATIONS,
    _GARBAGE_SIRETS,
    _IDCCS,
    _INVITATION_SOURCES,
    _MESSY_COUNT_COLUMNS,
    _NAF_CODES,
    _PLACES,
    _UNION_PRESENCE,
    _UNIONS,
    INVITATIONS_TABLE,
    PV_TABLE,
)

# -------------------------------------------------------------------------- PV rows

def _places(draws: _Draws, n: int) -> pl.DataFrame:
    """n (cp, ville, Région, dep) rows drawn from _PLACES."""
    cp = pl.col("cp")
    places = pl.DataFrame([p[:3] for p in _PLACES], schema=["cp", "ville", "Région"], orient="row")
    return places[draws.pick(n, [p[3] for p in _PLACES])].with_columns(
        dep=pl.when(cp.str.starts_with("97")).then(cp.str.slice(0, 3))
        .when(cp.str.starts_with("20")).then(pl.when(cp < "20200").then(pl.lit("2A")).otherwise(pl.lit("2B")))
        .otherwise(cp.str.slice(0, 2)))


def _sirets_frame(n: int, seed: int) -> pl.DataFrame:
    """One row per establishment: canonical SIRET and its stable attributes."""
    draws = _Draws(seed, "establishments")
    siret = _canonical_sirets(draws, n)
    n = len(siret)
    frame = _places(draws, n).with_columns(
        siret_no=pl.int_range(n, eager=True), siret=siret,
        cycles=pl.Series(_CYCLE_PATTERNS, dtype=pl.List(pl.Int64)).gather(
            draws.pick(n, _CYCLE_PATTERN_WEIGHTS)),
        prefix=draws.choice(n, _COMPANY_PREFIXES), name=draws.choice(n, _COMPANY_NAMES),
        suffix=draws.choice(n, _COMPANY_SUFFIXES),
        idcc=draws.choice(n, _IDCCS), FD=draws.choice(n, _FEDERATIONS),
        ud_form=draws.pick(n, [0.55, 0.2, 0.1, 0.15]), ul_u=draws.uniform(n))
    ud_form, ville = pl.col("ud_form"), pl.col("ville")
    return frame.with_columns(
        raison_sociale=pl.concat_str("prefix", "name", "suffix", separator=" ").str.strip_chars(),
        UD=pl.when(ud_form == 0).then(pl.col("dep")).when(ud_form == 1).then("UD " + pl.col("dep"))
        .when(ud_form == 2).then("UD de " + ville),
        UL=pl.when(pl.col("ul_u") < 0.6).then("UL " + ville),
    ).drop("prefix", "name", "suffix", "ud_form", "ul_u", "dep")


def _elections_frame(sirets: pl.DataFrame, seed: int) -> pl.DataFrame:
    """One row per election: SIRET, cycle, date and how each is written."""
    draws = _Draws(seed, "elections")
    elections = sirets.select("siret_no", "cycles").explode("cycles").rename({"cycles": "cycle_no"})
    repeated = elections.filter(draws.uniform(elections.height) < 0.07)  # 2nd election in a cycle
    elections = pl.concat([elections, repeated]).sort("siret_no", maintain_order=True)
    n = elections.height
    first = pl.col("cycle_no").replace_strict({k: _days(w[0]) for k, w in _CYCLE_WINDOWS.items()})
    last = pl.col("cycle_no").replace_strict({k: _days(w[1]) for k, w in _CYCLE_WINDOWS.items()})
    offset = draws.integers(n, 1, 730)
    where = draws.uniform(n)
    carence = draws.uniform(n) < 0.09
    colleges = pl.select(pl.when(carence).then(1 + (draws.uniform(n) < 0.1).cast(pl.Int64))
                         .otherwise(draws.pick(n, [0.45, 0.35, 0.20]) + 1)).to_series()
    return elections.with_columns(
        within=draws.uniform(n), offset=offset, where=where, carence=carence, n_colleges=colleges,
        siret_form=draws.pick(n, _SIRET_FORM_WEIGHTS), lost_zero=draws.uniform(n) < 0.4,
        siret_garbage=draws.choice(n, _GARBAGE_SIRETS),
        cycle_form=draws.pick(n, _CYCLE_FORM_WEIGHTS), cycle_pick=draws.integers(n, 0, 1_000),
        date_form=draws.pick(n, _DATE_FORM_WEIGHTS), date_pick=draws.integers(n, 0, 1_000),
    ).with_columns(
        date=pl.when(pl.col("where") < 0.01).then(first - pl.col("offset"))  # outside the window
        .when(pl.col("where") < 0.02).then(last + pl.col("offset"))
        .otherwise(first + (pl.col("within") * (last - first + 1)).floor().cast(pl.Int64))
        .cast(pl.Int32).cast(pl.Date),
    ).drop("within", "offset", "where")


def _pv_frame(n_pv: int, seed: int) -> pl.DataFrame:
    """Logical PV rows (counts as floats, with their SQLite text twins)."""
    n_sirets = n_pv // 2 + 20  # ~2.75 rows per SIRET: enough rows, cut below
    while True:
        sirets = _sirets_frame(n_sirets, seed)
        elections = _elections_frame(sirets, seed)
        if elections["n_colleges"].sum() >= n_pv:
            break
        n_sirets *= 2
    rows = (elections.with_columns(college=pl.int_ranges(0, "n_colleges")).explode("college")
            .head(n_pv).join(sirets.drop("cycles"), on="siret_no", how="left", maintain_order="left"))
    draws = _Draws(seed, "colleges")
    n = rows.height
    band = draws.uniform(n)
    inscrits = (pl.when(band < 0.86).then(_log_uniform(draws.uniform(n), 8, 500))
                .when(band < 0.985).then(_log_uniform(draws.uniform(n), 500, 3000))
                .otherwise(_log_uniform(draws.uniform(n), 3000, 20000)))
    college_carence = pl.col("carence") | (pl.col("u_college_carence") < 0.03)
    rows = rows.with_columns(
        inscrits=inscrits, turnout=0.25 + 0.7 * draws.uniform(n), valid=0.85 + 0.15 * draws.uniform(n),
        u_college_carence=draws.uniform(n), votants_null=draws.uniform(n) < 0.3,
        u_sve=draws.uniform(n), u_anomaly=draws.uniform(n), share=0.9 + 0.1 * draws.uniform(n),
        institution_pick=draws.uniform(n),
    ).with_columns(
        college_carence=college_carence,
        votants=pl.when(college_carence & pl.col("votants_null")).then(None)
        .when(college_carence).then(0.0)
        .otherwise((pl.col("inscrits") * pl.col("turnout")).floor()),
    ).with_columns(
        sve=pl.when(pl.col("u_sve") < 0.01).then(None)
        .otherwise((pl.col("votants") * pl.col("valid")).floor()),
        inscrits=pl.when((pl.col("u_anomaly") < 0.003) & (pl.col("votants") > 10))
        .then((pl.col("votants") * 0.8).floor()).otherwise(pl.col("inscrits")),  # votants > inscrits
    )
    rows = _union_scores(rows, draws).with_columns(
        sve=pl.when(pl.col("u_anomaly") > 0.9995).then(-1.0).otherwise(pl.col("sve")),
        inscrits=pl.when(pl.col("u_anomaly").is_between(0.5, 0.503)).then(None)
        .otherwise(pl.col("inscrits")),
    )
    for column in ("inscrits", "votants", "sve"):
        rows = _messy_count(rows.rename({column: f"num_{column}"}), f"num_{column}", draws)
    text_columns = ("raison_sociale", "idcc", "FD", "UD", "ville", "Région", "UL")
    text_draws = {column: draws.uniform(n) for column in text_columns}
    cp_draw = draws.uniform(n)
    rows = rows.with_columns(
        siret_raw=_messy_siret("siret", "siret_form", "lost_zero", "siret_garbage"),
        cycle_raw=_messy_cycle("cycle_no", "cycle_form", "cycle_pick"),
        date_raw=_messy_date("date", "date_form", "date_pick"),
        institution=_institution(),
        college_label=pl.when(pl.col("n_colleges") == 1).then(pl.lit("Collège unique"))
        .otherwise(pl.lit(pl.Series(_COLLEGES)).gather(pl.col("college"))),
        cp_raw=pl.when(cp_draw < 0.03).then(None)
        .when(cp_draw < 0.035).then(pl.col("cp") + ".0")
        .when((cp_draw < 0.3) & pl.col("cp").str.starts_with("0")).then(pl.col("cp").str.slice(1))
        .otherwise(pl.col("cp")),
        **{f"{c}_u": u for c, u in text_draws.items()},
    ).with_columns(**{c: _messy_text(c, f"{c}_u") for c in text_draws})
    return rows[draws.permutation(n)].with_columns(id_pv=pl.int_range(1, n + 1))


def _institution() -> pl.Expr:
    pick, cycle = pl.col("institution_pick"), pl.col("cycle_no")
    carence_label = (pl.when(pick < 0.85).then(pl.lit("CAR")).when(pick < 0.95).then(pl.lit("Carence"))
                     .otherwise(pl.lit("car")))
    c3_label = (pl.when(pick < 0.4).then(pl.lit("CE")).when(pick < 0.65).then(pl.lit("DUP"))
                .when(pick < 0.75).then(pl.lit("DP")).otherwise(pl.lit("CSE")))
    later_label = pl.when(pick < 0.97).then(pl.lit("CSE")).otherwise(pl.lit("CSE central"))
    return (pl.when(pl.col("carence")).then(carence_label)
            .when(cycle == 3).then(c3_label).otherwise(later_label))


def _union_scores(rows: pl.DataFrame, draws: _Draws) -> pl.DataFrame:
    """score_<union>: the SVE shared among the unions present; some x.5 voix."""
    n = rows.height
    present = {u: draws.uniform(n) < p for u, p in zip(_UNIONS, _UNION_PRESENCE, strict=True)}
    fallback = draws.integers(n, 0, len(_UNIONS))
    nobody = ~pl.any_horizontal([pl.col(f"present_{u}") for u in _UNIONS])
    rows = rows.with_columns(**{f"present_{u}": s for u, s in present.items()}, fallback=fallback)
    rows = rows.with_columns(**{f"present_{u}": pl.col(f"present_{u}") | (nobody & (pl.col("fallback") == i))
                                for i, u in enumerate(_UNIONS)})
    weights = {u: pl.when(pl.col(f"present_{u}")).then(draws.uniform(n) ** 2 + 0.01).otherwise(0.0)
               for u in _UNIONS}
    rows = rows.with_columns(**{f"weight_{u}": w for u, w in weights.items()},
                             zeros_for_absent=draws.uniform(n) < 0.2)
    weight_sum = pl.sum_horizontal([pl.col(f"weight_{u}") for u in _UNIONS])
    base = pl.coalesce(pl.col("sve"), pl.col("votants")) * pl.col("share")
    scores = {}
    for union in _UNIONS:
        fraction = draws.uniform(n)
        voix = (base * pl.col(f"weight_{union}") / weight_sum).floor()
        voix = (pl.when(pl.lit(fraction) < 0.07).then(voix + 0.5)
                .when(pl.lit(fraction) < 0.08).then(voix + 1 / 3).otherwise(voix))
        scores[f"score_{union}"] = (
            pl.when(pl.col("college_carence")).then(None)
            .when(pl.col(f"present_{union}")).then(voix)
            .when(pl.col("zeros_for_absent")).then(0.0).otherwise(None))
    return rows.with_columns(**scores)


# ------------------------------------------------------------------------ assembly

def _pv_table(rows: pl.DataFrame, *, sqlite_mess: bool) -> pa.Table:
    cgt = pl.col("score_CGT")
    counts = {c: pl.col(f"{c}_text" if sqlite_mess else c) for c in _MESSY_COUNT_COLUMNS}
    columns = rows.select(
        pl.col("id_pv"), pl.col("cycle_raw").alias("Cycle"), pl.col("siret_raw").alias("siret"),
        "FD", "idcc", "raison_sociale", pl.col("cp_raw").alias("cp"), "ville", "UD", "Région",
        "institution", "UL",
        OETAMIC=pl.when(pl.col("n_colleges") == 1).then(pl.lit("OETAMIC"))
        .otherwise(pl.lit(pl.Series(["OE", "TAM", "IC"])).gather(pl.col("college"))),
        deno_coll=pl.col("college_label"),
        date_scrutin=pl.col("date_raw"),
        duree_mandat=pl.lit(4.0),
        date_prochain_scrutin=pl.col("date").dt.offset_by("4y").dt.strftime("%d/%m/%Y"),
        Quadrimestre_scrutin=pl.format("{}-Q{}", pl.col("date").dt.year(),
                                       (pl.col("date").dt.month() - 1) // 4 + 1),
        **counts,
        **{"Tx_Part._PV": pl.col("num_votants") / pl.col("num_inscrits").replace(0.0, None)},
        **{f"score_{u}": pl.col(f"score_{u}") for u in _UNIONS},
        **{"Présence_CGT_PV": pl.when(cgt > 0).then(pl.lit("Oui")).otherwise(pl.lit("Non"))},
        **{f"PRES_PV_{'SUD' if u == 'SOLIDAIRE' else u}":
           pl.when(pl.col(f"score_{u}") > 0).then(pl.lit("1")).otherwise(pl.lit("0")) for u in _UNIONS},
        Collège=pl.col("college_label"),
        Effectif_Siret=(pl.col("num_inscrits") * 1.1).round(0),
        siren=pl.col("siret").str.slice(0, 9),
        IDCC_RED=pl.col("idcc"),
        binaire=(cgt > 0).cast(pl.Float64),
    )
    return _arrow_table(columns, PV_TABLE, text_columns=_MESSY_COUNT_COLUMNS if sqlite_mess else ())


def _invitations_table(n: int, seed: int, pv_sirets: pl.Series) -> pa.Table:
    draws = _Draws(seed, "invitations")
    new_sirets = _canonical_sirets(draws, max(1, n // 6))
    new_sirets = new_sirets.filter(~new_sirets.is_in(pv_sirets.implode()))
    from_pv = draws.uniform(n) < 0.82
    siret = pl.select(pl.when(from_pv).then(pv_sirets.gather(draws.integers(n, 0, len(pv_sirets))))
                      .otherwise(new_sirets.gather(draws.integers(n, 0, len(new_sirets))))).to_series()
    start, end = _days(date(2019, 1, 1)), _days(date(2026, 12, 31))
    place = _places(draws, n)
    form = draws.pick(n, [0.97, 0.015, 0.01, 0.005])
    frame = pl.DataFrame({
        "id": pl.int_range(1, n + 1, eager=True), "siret": siret, "form": form,
        "date_invit": draws.integers(n, start, end + 1).cast(pl.Int32).cast(pl.Date),
        "source": draws.choice(n, _INVITATION_SOURCES),
        "prefix": draws.choice(n, _COMPANY_PREFIXES), "name": draws.choice(n, _COMPANY_NAMES),
        "code_postal": place["cp"], "commune": place["ville"], "ud": place["dep"],
        "activite_principale": draws.choice(n, _NAF_CODES),
        "tranche_effectifs": draws.choice(n, ["03", "11", "12", "21", "22", "31", "32", "41"]),
        "est_siege": draws.uniform(n) < 0.3, "est_actif": draws.uniform(n) < 0.97,
        "categorie_entreprise": draws.choice(n, ["PME", "ETI", "GE", None], [0.6, 0.2, 0.1, 0.1]),
        "enrich_seconds": draws.integers(n, 3_600, 30 * 86_400),
        "fd": draws.choice(n, _FEDERATIONS), "idcc": draws.choice(n, _IDCCS),
        "effectif_connu": draws.integers(n, 11, 2_000),
        "reception_days": draws.integers(n, 0, 21), "election_u": draws.uniform(n),
        "election_days": draws.integers(n, 30, 120),
    })
    frame = frame.with_columns(
        siret=pl.when(pl.col("form") == 1).then(pl.concat_str(
            [pl.col("siret").str.slice(0, 9), pl.col("siret").str.slice(9)], separator=" "))
        .when(pl.col("form") == 2).then(pl.col("siret").str.strip_chars_start("0"))
        .when(pl.col("form") == 3).then(pl.lit("inconnu")).otherwise(pl.col("siret")),
        raw=pl.format('{{"source": "{}", "siret": "{}"}}', "source", "siret"),
        denomination=pl.concat_str("prefix", "name", separator=" "),
        date_enrichissement=pl.col("date_invit").cast(pl.Datetime("us"))
        + pl.duration(seconds=pl.col("enrich_seconds")),
        idcc_url=pl.format("https://code.travail.gouv.fr/convention-collective/{}", "idcc"),
        date_reception=pl.col("date_invit") + pl.duration(days=pl.col("reception_days")),
        date_election=pl.when(pl.col("election_u") < 0.25)
        .then(pl.col("date_invit") + pl.duration(days=pl.col("election_days"))),
        structure_saisie=pl.format("UD {}", "ud"),
    )
    return _arrow_table(frame, INVITATIONS_TABLE)


def _declared_table(data: pa.Table, table: str,
                    column_type: Callable[[str, str, pa.DataType | None], pa.DataType]) -> pa.Table:
    """``data`` with exactly the declared columns of ``table``, in DDL order.

    ``column_type(name, sql_type, given_type)`` gives each column's Arrow type
    (``given_type`` is None for a column ``data`` lacks: it becomes NULL).
    """
    declared = _declared_columns(table)
    unknown = set(data.column_names) - {name for name, _ in declared}
    if unknown:
        raise ValueError(f"{table}: columns not in the legacy DDL: {sorted(unknown)}")
    arrays = []
    for name, sql_type in declared:
        given = data[name] if name in data.column_names else None
        target = column_type(name, sql_type, None if given is None else given.type)
        arrays.append(pa.nulls(data.num_rows, target) if given is None else given.cast(target))
    return pa.Table.from_arrays(arrays, names=[name for name, _ in declared])


def _arrow_table(frame: pl.DataFrame, table: str, *, text_columns: Sequence[str] = ()) -> pa.Table:
    """The declared columns of ``table`` from ``frame``, typed as the DDL says."""
    present = [name for name, _ in _declared_columns(table) if name in frame.columns]
    return _declared_table(
        frame.select(present).to_arrow(), table,
        lambda name, sql_type, _: pa.string() if name in text_columns else _ARROW_TYPES[sql_type])


def generate(n_pv: int = 126_000, n_invitations: int = 20_000, seed: int = 42, *,
             sqlite_mess: bool = True) -> tuple[pa.Table, pa.Table]:
    """Seeded, realistic and messy ``("Tous_PV", invitations)`` Arrow tables.

    Both tables have every column of the legacy DDL, in order, typed as
    PostgreSQL declares them (INTEGER → int64, FLOAT → float64, VARCHAR/TEXT/
    JSON → string, DATE → date32, BOOLEAN → bool, TIMESTAMP → timestamp[us]).
    About 45k distinct SIRETs for 126k PV rows; 1–3 colleges per election
    sharing SIRET, cycle and date text; C3/C4 (and a few C5) elections, some
    SIRETs with two elections in one cycle; roughly 82 % of the invitations
    name a PV SIRET, the rest invitation-only ones.

    With ``sqlite_mess=True`` (for SQLite, whose FLOAT columns keep text that
    is not a number) ``num_inscrits``, ``num_votants`` and ``num_sve`` are
    string columns where a few % of the cells read ``12,5``, ``1 234`` or
    ``nan``; with ``sqlite_mess=False`` (for PostgreSQL) they are float64 with
    the same numbers and NULL for the text that is no number. Everything else
    is identical between the two variants.

    Examples
    --------
    >>> pv, invitations = generate(n_pv=1_000, n_invitations=200, seed=7)
    >>> pv.num_rows, invitations.num_rows
    (1000, 200)
    >>> pv.schema.field("num_inscrits").type, pv.schema.field("score_CGT").type
    (DataType(string), DataType(double))
    >>> generate(n_pv=1_000, n_invitations=200, seed=7)[0].equals(pv)
    True
    >>> generate(n_pv=10, n_invitations=0, sqlite_mess=False)[0].schema.field("num_sve").type
    DataType(double)
    """
    if n_pv < 0 or n_invitations < 0:
        raise ValueError("row counts must be >= 0")
    rows = _pv_frame(n_pv, seed)
    pv = _pv_table(rows, sqlite_mess=sqlite_mess)
    pv_sirets = rows["siret"].unique(maintain_order=True)
    if pv_sirets.is_empty():
        pv_sirets = _canonical_sirets(_Draws(seed, "fallback"), 10)
    return pv, _invitations_table(n_invitations, seed, pv_sirets)
