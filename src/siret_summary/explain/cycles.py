"""Per-cycle facts of one SIRET: its elections, the latest, the colleges summed, carence, seats step by step,
and how each cross-cycle attribute was chosen (issue 27, SPEC §4).

Every value comes from the summary's own expressions run on the SIRET's
normalised rows: :func:`~siret_summary.rules.summary.election_rows` (the
election's rows in lead order), :func:`~siret_summary.rules.summary.aggregate_elections`
(its sums: the rest of ``latest_election_per_cycle``), :func:`~siret_summary.rules.seats.seat_basis`
(S, SVE, the quotient floors), :func:`~siret_summary.rules.values.carence`
and :func:`~siret_summary.rules.summary.department`; the seats and their
highest-average rounds are those of the summary row's own computation
(``summary_frame(..., trace=SeatRounds())``: each round as it ran). The
facts describe what those computed; they decide nothing.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import polars as pl

from siret_summary.config import UNIONS, Config
from siret_summary.explain.rows import ROW, plain
from siret_summary.rules.seats import R2314_1, seat_basis
from siret_summary.rules.summary import (
    _VOIX,
    CROSS_CYCLE_ATTRIBUTES,
    aggregate_elections,
    department,
    election_rows,
)  # fmt: skip
from siret_summary.rules.values import carence

KEY = "_election"


def _band(seats: int | None) -> list[int | None] | None:
    """The R2314-1 headcount band [lowest, highest] (highest None for the last) giving ``seats``."""
    for i, (lower, band) in enumerate(R2314_1):
        if band == seats:
            upper = R2314_1[i + 1][0] - 1 if i + 1 < len(R2314_1) else None
            return [lower, upper]
    return None


class SeatRounds:
    """A :data:`~siret_summary.rules.summary.CycleRoundTrace` for :func:`~siret_summary.rules.summary.summary_frame`:
    the highest-average rounds of the summary's own seat allocation, as it ran, by (cycle index, election
    row number in that cycle's branch) — one SIRET has at most one election per cycle, numbered 0."""

    def __init__(self) -> None:
        self.rounds: dict[tuple[int, int], list[dict[str, Any]]] = {}

    def __call__(self, cycle: int, keys: np.ndarray, averages: np.ndarray, winners: np.ndarray,
                 tied: np.ndarray) -> None:
        for at, key in enumerate(keys.tolist()):
            self.rounds.setdefault((cycle, int(key)), []).append({
                "averages": {u: (None if not np.isfinite(a) else float(a))
                             for u, a in zip(UNIONS, averages[at], strict=False)},
                "winner": UNIONS[int(winners[at])],
                "tied": [u for u, t in zip(UNIONS, tied[at], strict=False) if t],
            })  # fmt: skip


def _seats(
    basis: dict[str, Any], final: dict[str, Any], rounds: list[dict[str, Any]], carence_: bool
) -> dict[str, Any]:
    s = basis["_seats"]
    voix = {u: basis[f"_v{i}"] for i, u in enumerate(UNIONS)}
    why_none = None
    if s is None:
        why_none = "below_11"
    elif carence_:
        why_none = "carence"
    elif not basis["_total"] > 0:
        why_none = "no_votes"
    out: dict[str, Any] = {
        "titular_seats": s, "band": _band(s), "none_because": why_none,
        "sve_used": basis["_sve"], "voix_total": basis["_total"], "voix": voix,
        "seats": {u: final[u] for u in UNIONS},
    }  # fmt: skip
    if why_none is not None:
        return out
    given = {u: basis[f"_f{i}"] for i, u in enumerate(UNIONS)}
    out["quotient"] = basis["_sve"] / s if basis["_sve"] else None
    out["by_quotient"] = dict(given)
    out["remaining"] = basis["_remaining"]
    steps = []
    for number, r in enumerate(rounds, start=1):
        tie_break = None
        if len(r["tied"]) > 1:
            most = max(voix[u] for u in r["tied"])
            tie_break = "more_voix" if [u for u in r["tied"] if voix[u] == most] == [r["winner"]] else "union_order"
        steps.append({"seat": number, **r, "tie_break": tie_break})
        given[r["winner"]] += 1
    out["rounds"] = steps
    return out


@functools.cache
def _DEPARTMENTS() -> tuple[pl.Expr, pl.Expr]:  # noqa: N802 (a constant, built on first use)
    """:func:`department` of the UD alone, and of the UD and the postal code (built once per process)."""
    return (department(pl.col("ud"), pl.lit(None, pl.String)).alias("from_ud"),
            department(pl.col("ud"), pl.col("cp")).alias("dep"))


@functools.cache
def _CARENCE_PARTS() -> tuple[pl.Expr, pl.Expr]:  # noqa: N802 (a constant, built on first use)
    """values.carence on each part of the rule: the institution alone, the votants alone."""
    return (carence(pl.col("institution"), pl.lit(1.0)).alias("by_institution"),
            carence(pl.lit(None, dtype=pl.String), pl.col("votants")).alias("by_votants"))


def _carence_rows(rows: pl.DataFrame) -> dict[int, list[dict[str, Any]]]:
    """Each election row's carence and which part of the rule made it, by cycle (one pass for all cycles)."""
    why = rows.select("_cycle", "id", "carence", *_CARENCE_PARTS(), "institution", "votants")
    out: dict[int, list[dict[str, Any]]] = {}
    for r in why.iter_rows(named=True):
        out.setdefault(r.pop("_cycle"), []).append({k: plain(v) for k, v in r.items()})
    return out


def _first_in_lead_order(rows: pl.DataFrame, name: str) -> tuple[Any, Any]:
    """(value, id) of the first row in lead order holding ``name`` (the aggregation's drop_nulls().first())."""
    for value, row_id in zip(rows.get_column(name).to_list(), rows.get_column("id").to_list(), strict=True):
        if value is not None:
            return value, row_id
    return None, None


def cycle_facts(
    pv: pl.DataFrame, config: Config, row: dict[str, Any], rounds: dict[tuple[int, int], list[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], dict[int, pl.DataFrame]]:
    """The facts of each configured cycle, and each cycle's election rows in lead order.

    ``pv``: the SIRET's normalised rows with ``id``, ``institution`` and ``_cycle`` (:class:`SiretRows.by_row`);
    ``row``: the summary row computed from them; ``rounds``: :attr:`SeatRounds.rounds` of that computation.
    The seats shown are the row's own (``{union}_siege_{suffix}``), the rounds those that gave them.
    """
    # No row (no election in any cycle, no invitation): no seats are read.
    seats = {i: {u: row.get(f"{u}_siege_{c.suffix}") for u in UNIONS} for i, c in enumerate(config.cycles)}
    indexed = pv.filter(pl.col("siret").is_not_null())
    # Each step collected before the next (measured: one collect_all of the three costs more CPU here).
    lead = election_rows(pv.drop("_cycle").lazy(), config).collect()
    elections = aggregate_elections(lead.lazy()).collect().sort("_cycle")  # latest_election_per_cycle's steps
    basis = seat_basis(elections.lazy().with_row_index(KEY), key=KEY, voix=_VOIX).collect()
    # Read once into Python (a few rows): one pass each instead of a filter per cycle and per date.
    in_cycles: dict[int, list[tuple[Any, Any]]] = {}
    for at, date, row_id in indexed.sort(ROW).select("_cycle", "date", "id").iter_rows():  # source order
        if at is not None:
            in_cycles.setdefault(at, []).append((date, row_id))
    election_at = {at: key for key, at in enumerate(elections.get_column("_cycle").to_list())}
    leads = {k[0]: frame for k, frame in lead.partition_by("_cycle", as_dict=True, maintain_order=True).items()}
    carence_rows = _carence_rows(lead)
    out, lead_rows = [], {}
    for i, cycle in enumerate(config.cycles):
        in_cycle = in_cycles.get(i, [])
        dates = sorted({d for d, _ in in_cycle})
        fact: dict[str, Any] = {
            "label": cycle.label, "first": cycle.first.isoformat(), "last": cycle.last.isoformat(),
            "elections": [{"date": d.isoformat(), "rows": [r for e, r in in_cycle if e == d]} for d in dates],
            "latest": dates[-1].isoformat() if dates else None,
        }  # fmt: skip
        if i not in election_at:
            out.append(fact | {"election": None})
            continue
        key = election_at[i]
        election = elections.row(key, named=True)
        rows = leads[i]
        lead_rows[i] = rows
        fd, fd_id = _first_in_lead_order(rows, "fd")
        ud, ud_id = _first_in_lead_order(rows, "ud")
        fact["election"] = {
            "date": plain(election["date"]), "colleges": rows["id"].to_list(),
            "lead_order": [{"id": r["id"], "inscrits": r["inscrits"]} for r in rows.iter_rows(named=True)],
            "totals": {"inscrits": election["inscrits"], "votants": election["votants"], "sve": election["sve"],
                       "voix": {u: election[f"voix_{u}"] for u in UNIONS}},
            "carence": election["carence"], "carence_rows": carence_rows[i],
            "fd": {"value": fd, "row_id": fd_id}, "ud": {"value": ud, "row_id": ud_id},
            "seats": _seats(basis.row(key, named=True), seats.get(i, {}), rounds.get((i, 0), []), election["carence"]),
        }  # fmt: skip
        out.append(fact)
    return out, lead_rows


def attribute_facts(cycles: list[dict[str, Any]], lead_rows: dict[int, pl.DataFrame], config: Config,
                    invitations: list[dict[str, Any]]) -> dict[str, Any]:
    """How each cross-cycle column was chosen: the cycle and row giving it (newest election first)."""
    out: dict[str, Any] = {}
    newest_first = [i for i in reversed(range(len(config.cycles))) if i in lead_rows]
    for name in (*CROSS_CYCLE_ATTRIBUTES, "ud"):
        chosen: dict[str, Any] = {"value": None, "cycle": None, "row_id": None,
                                  "looked_at": [config.cycles[i].label for i in newest_first]}
        for i in newest_first:
            value, row_id = _first_in_lead_order(lead_rows[i], name)
            if value is not None:
                chosen |= {"value": value, "cycle": config.cycles[i].label, "row_id": row_id}
                break
        out[name] = chosen
    ud, cp = out.pop("ud"), out["cp"]["value"]
    from_ud, dep = pl.DataFrame({"ud": [ud["value"]], "cp": [cp]}, schema={"ud": pl.String, "cp": pl.String}).select(
        _DEPARTMENTS()).row(0)  # the summary's own rule, on the UD alone and on both
    out["dep"] = {"value": dep,
                  "from": "ud" if from_ud is not None else ("cp" if cp is not None else None),
                  "ud": ud["value"], "ud_cycle": ud["cycle"], "cp": cp}
    held = [c["label"] for c in cycles if c.get("election")]
    out["statut_pap"] = {"cycles_with_election": held}
    dates = [c["election"]["date"] for c in cycles if c.get("election")]
    out["date_pv_max"] = {"dates": dates}
    last = cycles[-1]
    out["cgt_implantee"] = {"cycle": last["label"],
                            "cgt_voix": last["election"]["totals"]["voix"]["cgt"] if last.get("election") else None}
    valid = [f for f in invitations if f["normalised"]["date"] is not None]
    latest = max(valid, key=lambda f: f["normalised"]["date"]) if valid else None
    out["date_pap_c5"] = {"invitation_id": latest["id"] if latest else None,
                          "valid_invitations": len(valid), "invitations": len(invitations)}
    return out
