"""``Explanation.to_text()``: the explanation's facts (``to_dict()``) as French prose for an organiser.

Only wording: every number and decision shown is a fact computed elsewhere
(:mod:`siret_summary.explain`); nothing is recomputed here.
"""

from __future__ import annotations

from typing import Any

UNION_NAMES = {"cgt": "CGT", "cfdt": "CFDT", "fo": "FO", "cftc": "CFTC", "cgc": "CFE-CGC", "unsa": "UNSA",
               "sud": "Solidaires", "autre": "autres"}
REJECTED = {
    "siret_scientific": "écrit en notation scientifique : le tableur a déjà perdu les derniers chiffres, "
                        "il ne peut pas devenir le numéro d'un autre établissement",
    "siret_too_long": "plus de 14 chiffres",
    "siret_empty": "aucun chiffre",
}
WARNINGS = {
    "siret_luhn": "SIRET gardé bien que sa clé de contrôle soit fausse",
    "date_unparsed": "date illisible (vide après normalisation)",
    "count_negative": "un effectif ou un score négatif (ignoré)",
    "count_unparsed": "un effectif ou un score illisible (ignoré)",
    "count_too_large": "un effectif ou un score au-delà d'un milliard (ignoré)",
    "text_not_utf8": "un texte qui n'était pas en UTF-8 (lu en Windows-1252)",
    "text_nul": "un texte contenant des caractères NUL (retirés)",
}
OUTSIDE = {
    "cycle_not_configured": "son cycle « {cycle} » n'est aucun des cycles configurés",
    "no_date": "sa date est absente ou illisible",
    "date_outside_window": "sa date {date} n'est pas dans la fenêtre du cycle {cycle}",
}


def number(value: Any) -> str:
    """A count as a French reader writes it (``1 234,5``); ``—`` for none."""
    if value is None:
        return "—"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = f"{value:,}".replace(",", "\u202f").replace(".", ",")
    return text


def _date(iso: str | None) -> str:
    if not iso:
        return "—"
    y, m, d = iso[:10].split("-")
    return f"{d}/{m}/{y}"


def _row_line(fact: dict[str, Any], table: str) -> str:
    who = f"ligne {fact['id']}" if fact["id"] is not None else f"ligne sans identifiant (n° {fact['row'] + 1})"
    raw = ", ".join(f"{k} = {v!r}" for k, v in fact["raw"].items() if v is not None)
    fate, reason, n = fact["fate"], fact["reason"], fact["normalised"]
    if fate == "rejected":
        what = f"rejetée : SIRET {REJECTED.get(reason, reason)}"
    elif fate == "outside_cycles":
        what = "hors de tout cycle : " + OUTSIDE[reason].format(cycle=n.get("cycle"), date=_date(n.get("date")))
    elif fate == "older_election":
        what = f"gardée, cycle {fact['cycle']}, mais une élection plus récente du même cycle l'emporte"
    elif fate == "older_invitation":
        what = "gardée, mais une invitation plus récente l'emporte"
    elif fate == "no_date":
        what = "gardée, mais sans date valide : elle ne compte pas"
    else:
        what = "retenue" + (f" (cycle {fact['cycle']})" if fact.get("cycle") else "")
    if fact["warnings"]:
        what += " ; avertissements : " + "; ".join(WARNINGS.get(w, w) for w in fact["warnings"])
    return f"  - {table} {who} — {what}.\n      lue : {raw or '(toutes les valeurs sont vides)'}"


def _seats(seats: dict[str, Any]) -> list[str]:
    s = seats["titular_seats"]
    if seats["none_because"] == "below_11":
        return ["  Sièges : aucun estimé — moins de 11 inscrits (ou inscrits inconnus), l'article R2314-1 "
                "ne prévoit pas de titulaire."]
    low, high = seats["band"]
    band = f"{low} à {high}" if high is not None else f"{low} et plus"
    lines = [f"  Sièges : {number(seats['titular_seats'])} titulaires (R2314-1 : {band} inscrits)."]
    if seats["none_because"] == "carence":
        return lines + ["  Élection en carence : aucun siège n'est attribué."]
    if seats["none_because"] == "no_votes":
        return lines + ["  Aucune organisation n'a de voix : aucun siège n'est attribué."]
    lines.append(f"  Suffrages valablement exprimés retenus : {number(seats['sve_used'])} "
                 f"(le plus grand du total SVE et de la somme des voix, {number(seats['voix_total'])}).")
    lines.append(f"  Quotient électoral : {number(seats['sve_used'])} / {s} = "
                 f"{number(round(seats['quotient'], 4))}.")
    given = [f"{UNION_NAMES[u]} {n}" for u, n in seats["by_quotient"].items() if n]
    lines.append("  Au quotient : " + (", ".join(given) if given else "aucun siège") +
                 f" ; reste {seats['remaining']} siège(s) à la plus forte moyenne.")
    for step in seats["rounds"]:
        averages = ", ".join(f"{UNION_NAMES[u]} {number(round(a, 4))}" for u, a in step["averages"].items()
                             if a is not None)
        line = f"  siège {step['seat']} de la plus forte moyenne : {UNION_NAMES[step['winner']]} ({averages})"
        if step["tie_break"] == "more_voix":
            line += " — égalité de moyenne, départagée par le plus grand nombre de voix"
        elif step["tie_break"] == "union_order":
            line += " — égalité de moyenne et de voix, départagée par l'ordre des organisations"
        lines.append(line + ".")
    final = [f"{UNION_NAMES[u]} {n}" for u, n in seats["seats"].items() if n]
    lines.append("  Résultat : " + ", ".join(final) + ".")
    return lines


def _cycle(cycle: dict[str, Any]) -> list[str]:
    head = f"Cycle {cycle['label']} ({_date(cycle['first'])} – {_date(cycle['last'])})"
    election = cycle["election"]
    if election is None:
        return [f"{head} : aucune élection — aucune ligne de ce SIRET n'a ce cycle et une date dans sa fenêtre."]
    lines = [f"{head} :"]
    if len(cycle["elections"]) > 1:
        others = ", ".join(_date(e["date"]) for e in cycle["elections"][:-1])
        lines.append(f"  {len(cycle['elections'])} dates d'élection ({others} et {_date(cycle['latest'])}) : "
                     f"la plus récente, {_date(cycle['latest'])}, est l'élection du cycle.")
    else:
        lines.append(f"  Une élection, le {_date(election['date'])}.")
    ids = ", ".join("sans identifiant" if i is None else str(i) for i in election["colleges"])
    lines.append(f"  Collèges additionnés (lignes {ids}) ; "
                 "ordre de tête : plus d'inscrits d'abord, puis le plus petit identifiant.")
    totals = election["totals"]
    voix = ", ".join(f"{UNION_NAMES[u]} {number(v)}" for u, v in totals["voix"].items() if v is not None)
    lines.append(f"  Totaux : {number(totals['inscrits'])} inscrits, {number(totals['votants'])} votants, "
                 f"SVE {number(totals['sve'])} ; voix : {voix or 'aucune'}.")
    if election["carence"]:
        why = []
        for r in election["carence_rows"]:
            because = "l'institution mentionne une carence" if r["by_institution"] else "pas de votant"
            why.append(f"ligne {r['id']} ({because})")
        lines.append("  Carence : oui — chaque ligne de l'élection est en carence : " + ", ".join(why) + ".")
    else:
        lines.append("  Carence : non — au moins une ligne a des votants et ne mentionne pas de carence.")
    for name in ("fd", "ud"):
        chosen = election[name]
        if chosen["value"] is not None:
            lines.append(f"  {name.upper()} : {chosen['value']!r} (ligne {chosen['row_id']}, première renseignée "
                         "dans l'ordre de tête).")
    return lines + _seats(election["seats"])


def _attributes(attributes: dict[str, Any]) -> list[str]:
    lines = ["Attributs (élection du cycle le plus récent d'abord, première valeur renseignée dans l'ordre de tête) :"]
    for name in ("raison_sociale", "idcc", "cp", "ville", "region", "ul"):
        a = attributes[name]
        if a["value"] is None:
            lines.append(f"  {name} : vide — aucune ligne des élections ({', '.join(a['looked_at']) or 'aucune'}) "
                         "ne le renseigne.")
        else:
            lines.append(f"  {name} : {a['value']!r} (cycle {a['cycle']}, ligne {a['row_id']}).")
    dep = attributes["dep"]
    if dep["from"] == "ud":
        lines.append(f"  dep : {dep['value']!r}, l'UD {dep['ud']!r} étant un code de département.")
    elif dep["value"] is not None:
        lines.append(f"  dep : {dep['value']!r}, tiré du code postal {dep['cp']!r}.")
    else:
        lines.append("  dep : vide — ni UD code de département, ni code postal à 5 chiffres.")
    return lines


def french(facts: dict[str, Any]) -> str:
    """The whole explanation, in French."""
    lines: list[str] = []
    spelling = facts["rejected_spelling"]
    if spelling is not None:
        lines.append(f"« {facts['asked']} » n'est pas un SIRET utilisable : "
                     f"{REJECTED.get(spelling['reason'], spelling['reason'])}.")
        n = len(facts["pv_rows"]) + len(facts["invitations"])
        lines.append(f"{n} ligne(s) des sources portent un SIRET rejeté avec ces chiffres"
                     + (" :" if n else " ; aucune ligne ne le porte."))
    else:
        row = facts["row"]
        if facts.get("only_rejected_rows"):
            lines.append(f"SIRET {facts['siret']} : absent de la table siret_summary — aucune ligne ne porte ce "
                         "SIRET utilisable, mais des lignes rejetées portent une écriture qui pourrait être "
                         "la sienne (chiffres perdus ou en trop) ; corrigez-les dans la source :")
        elif row is None:
            lines.append(f"SIRET {facts['siret']} : absent de la table siret_summary — "
                         + ("aucune ligne des sources ne porte ce SIRET."
                            if not facts["pv_rows"] and not facts["invitations"]
                            else "aucune de ses lignes n'est une élection d'un cycle configuré, "
                                 "et il n'a aucune invitation datée."))
        else:
            lines.append(f"SIRET {facts['siret']} ({row['raison_sociale'] or 'raison sociale inconnue'}) : "
                         f"statut {row['statut_pap']}.")
    if facts["pv_rows"] or facts["invitations"]:
        lines.append("Lignes des sources :")
        lines += [_row_line(f, "PV") for f in facts["pv_rows"]]
        lines += [_row_line(f, "invitation") for f in facts["invitations"]]
    for cycle in facts["cycles"]:
        lines += [""] + _cycle(cycle)
    if facts["attributes"]:
        lines += [""] + _attributes(facts["attributes"])
        pap = facts["row"]["date_pap_c5"] if facts["row"] else None
        lines.append(f"  date_pap_c5 : {_date(pap)} (la plus récente des invitations datées valides)."
                     if pap else "  date_pap_c5 : vide — aucune invitation datée valide.")
    return "\n".join(lines) + "\n"
