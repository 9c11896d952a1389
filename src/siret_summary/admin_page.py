"""The admin page of the FastAPI face: one self-contained HTML document (issue 18).

No CDN, no build step, no external file: inline CSS and a little JavaScript
that calls the router's own JSON routes (``status``, ``history``, start,
``cancel``) with the page's credentials, so the host's authentication guards
every action the page takes. French labels, like the host application.
"""

from __future__ import annotations

import json

from siret_summary.admin_explain import explain_section

__all__ = ["admin_html"]

_PAGE = """<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Reconstruction de la table siret_summary</title>
<style>
  :root { --fg: #1d2430; --muted: #5b6573; --line: #d9dee5; --accent: #1f5fbf; --ok: #1c7c3a;
          --bad: #b42318; --warn: #9a6700; --bg: #f6f7f9; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: var(--fg); background: var(--bg); }
  main { max-width: 1100px; margin: 0 auto; padding: 24px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 0 0 12px; }
  .sub { color: var(--muted); margin: 0 0 20px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
            margin-bottom: 18px; }
  .row { display: flex; gap: 28px; flex-wrap: wrap; align-items: baseline; }
  .field { min-width: 120px; }
  .field b { display: block; font-size: 12px; color: var(--muted); font-weight: 600;
             text-transform: uppercase; letter-spacing: .04em; }
  .progress { display: flex; align-items: center; gap: 12px; margin: 14px 0 10px; }
  .bar { flex: 1; height: 18px; background: #e8ecf1; border-radius: 9px; overflow: hidden; }
  .bar > div { height: 100%; width: 0; background: var(--accent); transition: width .3s ease; }
  #percent { min-width: 4.5em; text-align: right; font-weight: 600; font-variant-numeric: tabular-nums; }
  td.nowrap { white-space: nowrap; }
  button { font: inherit; padding: 7px 18px; border-radius: 6px; border: 1px solid var(--accent);
           background: var(--accent); color: #fff; cursor: pointer; margin-right: 8px; }
  button.secondary { background: #fff; color: var(--bad); border-color: var(--bad); }
  button:disabled { opacity: .45; cursor: default; }
  #message { color: var(--muted); margin-left: 8px; }
  table { border-collapse: collapse; width: 100%; font-size: 14px; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px; font-weight: 600;
           background: #e8ecf1; }
  .badge[data-status=completed] { background: #dcf3e3; color: var(--ok); }
  .badge[data-status=running] { background: #dde8fa; color: var(--accent); }
  .badge[data-status=failed], .badge[data-status=interrupted] { background: #fde4e1; color: var(--bad); }
  .badge[data-status=cancelled] { background: #fbf0d0; color: var(--warn); }
  .error { color: var(--bad); max-width: 360px; }
  .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
  .empty { color: var(--muted); font-style: italic; }
</style>
</head>
<body>
<main>
  <h1>Reconstruction de la table siret_summary</h1>
  <p class="sub">Une ligne par établissement (SIRET), reconstruite à partir des procès-verbaux d'élection
    et des invitations à négocier.</p>

  <section id="current">
    <h2>Reconstruction en cours ou dernière reconstruction</h2>
    <div class="row">
      <div class="field"><b>Statut</b><span id="status" class="badge" data-status="">…</span></div>
      <div class="field"><b>Étape</b><span id="stage">…</span></div>
      <div class="field"><b>Début</b><span id="started">…</span></div>
      <div class="field"><b id="elapsed-label">Durée</b><span id="elapsed">…</span></div>
    </div>
    <div class="progress">
      <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" id="bar"><div id="bar-fill"></div></div>
      <span id="percent">0 %</span>
    </div>
    <p id="error" class="error" hidden></p>
    <div>
      <button id="start" type="button">Lancer</button>
      <button id="cancel" type="button" class="secondary">Annuler</button>
      <span id="message" role="status"></span>
    </div>
  </section>

  <section>
    <h2>Historique des reconstructions</h2>
    <table>
      <thead><tr>
        <th>Statut</th><th>Mode</th><th>Début</th><th class="num">Durée</th><th class="num">Lignes</th>
        <th class="num">Insérées</th><th class="num">Mises à jour</th><th class="num">Supprimées</th>
        <th>Erreur</th>
      </tr></thead>
      <tbody id="history"><tr><td colspan="9" class="empty">Chargement…</td></tr></tbody>
    </table>
  </section>

  <section>
    <h2>Dernière reconstruction terminée : lignes rejetées et avertissements</h2>
    <div class="grid">
      <div><table><thead><tr><th>Lignes rejetées (motif)</th><th class="num">Nombre</th></tr></thead>
        <tbody id="rejected"></tbody></table></div>
      <div><table><thead><tr><th>Avertissements (motif)</th><th class="num">Nombre</th></tr></thead>
        <tbody id="warnings"></tbody></table></div>
    </div>
  </section>
</main>
<script>
"use strict";
const API = __API__;
const STATUS = { running: "en cours", pending: "en attente", completed: "terminée", failed: "échouée",
                 cancelled: "annulée", interrupted: "interrompue", not_found: "aucune" };
const STAGE = { pending: "démarrage", read: "lecture", compute: "calcul", write: "écriture", done: "terminée" };
const $ = (id) => document.getElementById(id);
let lastRun = null, timer = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function fmtDate(iso) { return iso ? new Date(iso).toLocaleString("fr-FR") : "—"; }
function fmtSeconds(s) {
  if (s === undefined || s === null) return "—";
  if (s < 60) return s.toFixed(1).replace(".", ",") + " s";
  return Math.floor(s / 60) + " min " + String(Math.round(s % 60)).padStart(2, "0") + " s";
}
function fmtInt(n) { return n === undefined || n === null ? "—" : Number(n).toLocaleString("fr-FR"); }
function badge(status) {
  const b = el("span", STATUS[status] || status, "badge");
  b.dataset.status = status;
  return b;
}
async function getJSON(url, options) {
  const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok && !(body && body.status)) {
    throw new Error("HTTP " + response.status + (body && body.detail ? " : " + body.detail : ""));
  }
  return body;
}

function showCurrent(state) {
  const running = state.status === "running" || state.status === "pending";
  const status = $("status");
  status.textContent = STATUS[state.status] || state.status;
  status.dataset.status = state.status;
  const progress = state.progress || {};
  $("stage").textContent = progress.stage ? (STAGE[progress.stage] || progress.stage) : "—";
  $("started").textContent = fmtDate(state.started_at);
  $("elapsed-label").textContent = running ? "Temps écoulé" : "Durée";
  $("elapsed").textContent = fmtSeconds(running ? state.elapsed_seconds : state.duration_seconds);
  const percent = Math.round(progress.percent || 0);
  $("bar-fill").style.width = percent + "%";
  $("bar").setAttribute("aria-valuenow", String(percent));
  $("percent").textContent = percent + " %";
  $("error").hidden = !state.error;
  $("error").textContent = state.error || "";
  $("start").disabled = running;
  $("cancel").disabled = !running;
  return running;
}

function showHistory(runs) {
  const body = $("history");
  body.replaceChildren();
  if (!runs.length) {
    const td = el("td", "Aucune reconstruction n'a encore été lancée.", "empty");
    td.colSpan = 9;
    body.append(el("tr")); body.lastChild.append(td);
  }
  for (const run of runs) {
    const r = run.result || {};
    const tr = el("tr");
    tr.dataset.runId = run.run_id;
    tr.dataset.status = run.status;
    const cell = (text, cls) => tr.append(el("td", text, cls));
    const td = el("td"); td.append(badge(run.status)); tr.append(td);
    cell(r.mode || "—");
    cell(fmtDate(run.started_at), "nowrap");
    cell(fmtSeconds(run.status === "running" ? run.elapsed_seconds : run.duration_seconds), "num");
    cell(fmtInt(r.rows), "num");
    cell(fmtInt(r.inserted), "num");
    cell(fmtInt(r.updated), "num");
    cell(fmtInt(r.deleted), "num");
    cell(run.error || "", "error");
    body.append(tr);
  }
  const done = runs.find((run) => run.status === "completed" && run.result);
  for (const [id, key, none] of [["rejected", "rejected", "Aucune ligne rejetée."],
                                 ["warnings", "warnings", "Aucun avertissement."]]) {
    const target = $(id);
    target.replaceChildren();
    const counts = done ? Object.entries(done.result[key] || {}).sort() : [];
    if (!counts.length) {
      const td = el("td", done ? none : "Aucune reconstruction terminée.", "empty");
      td.colSpan = 2;
      target.append(el("tr")); target.lastChild.append(td);
    }
    for (const [reason, count] of counts) {
      const tr = el("tr");
      tr.dataset.reason = reason;
      tr.append(el("td", reason), el("td", fmtInt(count), "num"));
      target.append(tr);
    }
  }
}

async function refresh() {
  clearTimeout(timer);
  let running = false;
  try {
    const state = await getJSON(API.status);
    running = showCurrent(state);
    const key = (state.run_id || "") + ":" + state.status;
    if (key !== lastRun) {  // a run started or ended: the history changed
      lastRun = key;
      showHistory((await getJSON(API.history)).runs || []);
    }
  } catch (err) {
    $("message").textContent = "Erreur : " + err.message;
  }
  timer = setTimeout(refresh, running ? 500 : 3000);
}

async function act(url, button) {
  button.disabled = true;
  try {
    const body = await getJSON(url, { method: "POST" });
    $("message").textContent = (body && (body.message || body.error)) || "";
  } catch (err) {
    $("message").textContent = "Erreur : " + err.message;
  }
  lastRun = null;
  refresh();
}

$("start").addEventListener("click", () => act(API.start, $("start")));
$("cancel").addEventListener("click", () => act(API.cancel, $("cancel")));
refresh();
</script>
</body>
</html>
"""


def admin_html(api: str) -> str:
    """The page for the JSON routes under ``api`` (e.g. ``/api/build/summary``), as one HTML string.

    The URLs are embedded as a JSON object (escaped for a ``<script>`` block),
    so a host prefix of any spelling cannot break out of the script; the
    script builds every text node with ``textContent`` (no HTML from data).
    """
    urls = {"start": api, "status": f"{api}/status", "history": f"{api}/history", "cancel": f"{api}/cancel"}
    literal = json.dumps(urls).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _PAGE.replace("__API__", literal).replace("</main>", explain_section(api) + "</main>")

