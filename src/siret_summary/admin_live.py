"""The admin page's live section (issue 28): how fresh the summary is, when the builder has ``live=True``.

A section of its own, inserted by :func:`siret_summary.admin_page.admin_html`.
Its script polls ``GET {api}/live`` (the watcher's ``live`` object, see
:mod:`siret_summary.fastapi_live`; no database read) every second with the
page's credentials, and shows « à jour » or « en retard de 3 s », the last
change seen, the last update, and a failing update (how many times in a row,
the error, when it is tried again) or a lost signal. Hidden while the
builder does not watch and never did (``{"watching": false}``). Every text
node is built with ``textContent`` (nothing from the data is read as HTML).
"""

from __future__ import annotations

import json

__all__ = ["live_section"]

_SECTION = """
  <section id="live" aria-labelledby="live-title" hidden>
    <h2 id="live-title">Suivi en direct des imports</h2>
    <div class="row">
      <div class="field"><b>Table siret_summary</b><span id="live-state" class="badge" data-state="">…</span></div>
      <div class="field"><b>Dernier changement vu</b><span id="live-change">—</span></div>
      <div class="field"><b>Dernière mise à jour</b><span id="live-run">—</span></div>
      <div class="field"><b>Mises à jour</b><span id="live-runs">—</span></div>
    </div>
    <p id="live-how" class="sub"></p>
    <div id="live-problem" class="notice error" role="alert" hidden></div>
    <div id="live-gap" class="notice cancelled" hidden></div>
  </section>
<script>
"use strict";
(function () {
  const URL = __LIVE__;
  const get = (id) => document.getElementById(id);
  const SIGNAL = { notify: "le serveur PostgreSQL signale chaque import validé",
                   poll: "la base est vérifiée plusieurs fois par seconde", none: "" };
  const TIME = { day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit",
                 second: "2-digit", timeZoneName: "short" };
  const n = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  function date(iso) {
    const d = typeof iso === "string" && iso ? new Date(iso) : null;
    return d && !isNaN(d.getTime()) ? d.toLocaleString("fr-FR", TIME) : "—";
  }
  function delay(s) {  // "3 s", "2 min 05 s", "1 h 04 min"
    s = Math.max(1, Math.round(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
    return Math.floor(s / 3600) + " h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + " min";
  }
  function show(live) {
    const section = get("live");
    const keys = Object.keys(live || {});
    if (!live || (live.watching !== true && keys.length <= 1)) { section.hidden = true; return; }
    section.hidden = false;
    const state = get("live-state");
    let text, kind;
    if (live.watching !== true) { text = "suivi arrêté"; kind = "stopped"; }
    else if (live.up_to_date === true) { text = "à jour"; kind = "fresh"; }
    else if (n(live.lag_seconds) !== null) { text = "en retard de " + delay(live.lag_seconds); kind = "behind"; }
    else { text = "mise à jour en cours"; kind = "behind"; }
    state.textContent = text;
    state.dataset.state = kind;
    get("live-change").textContent = date(live.last_change_seen);
    get("live-run").textContent = date(live.last_run_finished);
    get("live-runs").textContent = n(live.runs) === null ? "—" : live.runs.toLocaleString("fr-FR");
    get("live-how").textContent = live.watching === true && SIGNAL[live.signal]
      ? "La table est mise à jour d'elle-même après chaque import : " + SIGNAL[live.signal] + "." : "";
    const problem = get("live-problem");
    const failures = n(live.failures) || 0;
    if (failures > 0) {
      let t = "La mise à jour automatique a échoué" + (failures > 1 ? " " + failures + " fois de suite" : "")
        + " : " + (live.last_error || "cause inconnue") + ".";
      if (n(live.next_retry_seconds) !== null) t += " Nouvel essai dans " + delay(live.next_retry_seconds) + ".";
      problem.textContent = t; problem.hidden = false;
    } else if (live.watching !== true && live.last_error) {
      problem.textContent = "Le suivi en direct s'est arrêté : " + live.last_error
        + ". Corrigez la cause puis redémarrez l'application.";
      problem.hidden = false;
    } else { problem.hidden = true; }
    const gap = get("live-gap");
    const gaps = n(live.gaps) || 0;
    gap.hidden = gaps === 0;
    gap.textContent = gaps === 0 ? "" : "Le suivi a été interrompu " + (gaps > 1 ? gaps + " fois" : "une fois")
      + " puis a repris en relisant tout" + (live.last_gap ? " (dernière fois : " + live.last_gap + ")" : "") + ".";
  }
  async function poll() {
    try {
      const response = await fetch(URL, { credentials: "same-origin" });
      if (response.ok) show((await response.json()).live);
    } catch (e) { /* the main section says when the server does not answer */ }
    setTimeout(poll, 1000);
  }
  poll();
})();
</script>
"""

_STYLE = """
  #live-state[data-state=fresh] { background: #dcf3e3; color: var(--ok); }
  #live-state[data-state=behind] { background: #fbf0d0; color: var(--warn); }
  #live-state[data-state=stopped] { background: #fde4e1; color: var(--bad); }
"""


def live_section(api: str) -> str:
    """The live section (HTML, its style and its script) for the JSON routes under ``api`` (``/api/build/summary``)."""
    literal = json.dumps(f"{api}/live").replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return "<style>" + _STYLE + "</style>" + _SECTION.replace("__LIVE__", literal)
