"""The admin page of the FastAPI face: one self-contained HTML document (issues 18, 29).

No CDN, no build step, no external file: inline CSS, inline SVG and the
script of :mod:`siret_summary.admin_script`, which calls the router's own JSON
routes with the page's credentials, so the host's authentication guards
every action the page takes. French everywhere, for an operator who is not a
developer: errors say what happened and which button to press.

The page is laid out in sections, each a ``<section id=...>`` here and a
block of the script under the same name: a new section (another issue's)
is one more block in each.
"""

from __future__ import annotations

import json

from siret_summary.admin_explain import explain_section
from siret_summary.admin_live import live_section
from siret_summary.admin_script import SCRIPT

__all__ = ["admin_html"]

_STYLE = """
  :root { --fg: #1d2430; --muted: #5b6573; --line: #d9dee5; --accent: #1f5fbf; --ok: #1c7c3a;
          --bad: #b42318; --warn: #8a5a00; --bg: #f6f7f9; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: var(--fg); background: var(--bg); }
  main { max-width: 1100px; margin: 0 auto; padding: 24px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 0 0 12px; }
  .sub { color: var(--muted); margin: 0 0 12px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
            margin-bottom: 18px; min-width: 0; }
  .row { display: flex; gap: 12px 28px; flex-wrap: wrap; align-items: baseline; }
  .field { min-width: 120px; }
  .field b, dt { display: block; font-size: 12px; color: var(--muted); font-weight: 600;
                 text-transform: uppercase; letter-spacing: .04em; }
  dl { display: flex; flex-wrap: wrap; gap: 8px 28px; margin: 12px 0 0; }
  dd { margin: 0; }
  .progress { display: flex; align-items: center; gap: 12px; margin: 14px 0 6px; }
  .bar { flex: 1; height: 18px; background: #e8ecf1; border-radius: 9px; overflow: hidden; }
  .bar > div { height: 100%; width: 0; background: var(--accent); transition: width .3s ease; }
  #percent { min-width: 4.5em; text-align: right; font-weight: 600; font-variant-numeric: tabular-nums; }
  ol.steps { display: flex; flex-wrap: wrap; gap: 4px 18px; list-style: none; padding: 0; margin: 0 0 10px;
             color: var(--muted); font-size: 13px; }
  ol.steps li[data-state=done] { color: var(--ok); }
  ol.steps li[data-state=done]::before { content: "✓ "; }
  ol.steps li[aria-current=step] { color: var(--accent); font-weight: 700; }
  .buttons { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-top: 10px; }
  button, .button { font: inherit; padding: 7px 16px; border-radius: 6px; border: 1px solid var(--accent);
           background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; }
  button.secondary, .button.secondary { background: #fff; color: var(--accent); }
  button.danger { background: #fff; color: var(--bad); border-color: var(--bad); }
  button.force { background: var(--bad); border-color: var(--bad); }
  button:disabled { opacity: .45; cursor: default; }
  :focus-visible { outline: 3px solid #f0b400; outline-offset: 2px; }
  #message { color: var(--muted); }
  .notice { padding: 10px 12px; border-radius: 6px; margin: 10px 0; overflow-wrap: anywhere; }
  .notice.error { background: #fde4e1; color: #7a1a12; }
  .notice.cancelled { background: #fbf0d0; color: #5c3d00; }
  .notice.stale { background: #fff4d6; color: #5c3d00; border: 1px solid #e0b84a; }
  .notice details { margin-top: 6px; color: var(--fg); font-size: 13px; }
  main.is-stale section { opacity: .6; }
  textarea { width: 100%; font: 14px ui-monospace, monospace; padding: 6px; border: 1px solid var(--line);
             border-radius: 6px; }
  select { font: inherit; padding: 4px; }
  table { border-collapse: collapse; width: 100%; font-size: 14px; }
  caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
  td { overflow-wrap: break-word; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.nowrap, .badge { white-space: nowrap; }
  .badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px; font-weight: 600;
           background: #e8ecf1; }
  .badge[data-status=completed] { background: #dcf3e3; color: var(--ok); }
  .badge[data-status=running] { background: #dde8fa; color: var(--accent); }
  .badge[data-status=failed], .badge[data-status=interrupted] { background: #fde4e1; color: var(--bad); }
  .badge[data-status=cancelled] { background: #fbf0d0; color: var(--warn); }
  .error { color: var(--bad); }
  .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; align-items: start; }
  .empty { color: var(--muted); font-style: italic; }
  .toolbar { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; margin-bottom: 10px; }
  #samples-box { margin-top: 14px; }
  #chart svg { width: 100%; height: auto; display: block; }
  .legend { font-size: 12px; color: var(--muted); }
  @media (max-width: 640px) {
    main { padding: 10px; }
    section { padding: 12px; }
    .grid { grid-template-columns: 1fr; }
    /* Tables become one card per row: each cell says its column (data-label). */
    table.cards thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
    table.cards, table.cards tbody, table.cards tr, table.cards td { display: block; width: 100%; }
    table.cards caption { display: block; }
    table.cards tr { border-bottom: 1px solid var(--line); padding: 6px 0; }
    table.cards td.nowrap { white-space: normal; }
    table.cards td { overflow-wrap: anywhere; border: 0; padding: 2px 0; text-align: left; display: flex; gap: 10px; }
    table.cards td.num { text-align: left; }
    table.cards td::before { content: attr(data-label); flex: 0 0 40%; color: var(--muted); font-size: 12px; }
    table.cards td[data-label=""]::before { content: none; }
  }
"""

_BODY = """
<main id="main">
  <h1>Reconstruction de la table siret_summary</h1>
  <p class="sub">Une ligne par établissement (SIRET), reconstruite à partir des procès-verbaux d'élection
    et des invitations à négocier.</p>
  <p class="sub">Dernière mise à jour de cette page : <span id="updated">—</span></p>
  <div id="stale" class="notice stale" role="alert" hidden></div>

  <!-- section: current run -->
  <section id="current" aria-labelledby="current-title">
    <h2 id="current-title">Reconstruction en cours ou dernière reconstruction</h2>
    <div class="row">
      <div class="field"><b>Statut</b><span id="status" class="badge" data-status="">…</span></div>
      <div class="field"><b>Étape</b><span id="stage">…</span></div>
      <div class="field"><b>Début</b><span id="started">…</span></div>
      <div class="field"><b id="elapsed-label">Durée</b><span id="elapsed">…</span></div>
    </div>
    <div class="progress">
      <div class="bar" role="progressbar" aria-label="Avancement de la reconstruction" aria-valuemin="0"
           aria-valuemax="100" aria-valuenow="0" id="bar"><div id="bar-fill"></div></div>
      <span id="percent" aria-hidden="true">0 %</span>
    </div>
    <ol class="steps" id="steps" aria-label="Étapes">
      <li data-stage="read">Lecture</li><li data-stage="compute">Calcul</li>
      <li data-stage="write">Écriture</li><li data-stage="done">Terminée</li>
    </ol>
    <div id="outcome" class="notice" hidden>
      <p id="outcome-text"></p>
      <div class="buttons" id="outcome-actions"></div>
      <details id="outcome-detail"><summary>Détail technique (en anglais)</summary><p id="outcome-raw"></p></details>
    </div>
    <dl id="run-details"></dl>
    <div class="buttons">
      <button id="start" type="button">Lancer</button>
      <button id="full" type="button" class="secondary">Reconstruction complète</button>
      <button id="cancel" type="button" class="danger">Annuler</button>
    </div>
    <p id="message" role="status" tabindex="-1"></p>
  </section>

  <!-- section: targeted refresh -->
  <section id="targeted" aria-labelledby="targeted-title">
    <h2 id="targeted-title">Actualiser quelques SIRET</h2>
    <form id="targeted-form">
      <label for="sirets">SIRET à recalculer (un par ligne, ou séparés par des virgules)</label>
      <textarea id="sirets" name="sirets" rows="3" placeholder="732 829 320 00074"></textarea>
      <div class="buttons"><button id="refresh-sirets" type="submit">Actualiser ces SIRET</button></div>
    </form>
  </section>

  <!-- section: history -->
  <section id="history-section" aria-labelledby="history-title">
    <h2 id="history-title">Historique des reconstructions</h2>
    <div id="chart" aria-live="off"></div>
    <div class="toolbar">
      <label for="filter">Afficher :</label>
      <select id="filter">
        <option value="">toutes les reconstructions</option><option value="completed">terminées</option>
        <option value="failed">échouées</option><option value="cancelled">annulées</option>
        <option value="interrupted">interrompues</option><option value="running">en cours</option>
      </select>
    </div>
    <table class="cards">
      <caption>Les dernières reconstructions, la plus récente en premier</caption>
      <thead><tr>
        <th>Statut</th><th>Mode</th><th>Début</th><th class="num">Durée</th><th class="num">Lignes</th>
        <th class="num">Insérées</th><th class="num">Mises à jour</th><th class="num">Supprimées</th>
        <th>Problème</th>
      </tr></thead>
      <tbody id="history"><tr><td colspan="9" class="empty">Chargement…</td></tr></tbody>
    </table>
  </section>

  <!-- section: rejected rows -->
  <section id="rejects-section" aria-labelledby="rejects-title">
    <h2 id="rejects-title">Dernière reconstruction terminée : lignes rejetées et avertissements</h2>
    <div class="grid">
      <table class="cards"><caption>Lignes rejetées (non prises en compte)</caption>
        <thead><tr><th>Motif</th><th class="num">Nombre</th></tr></thead><tbody id="rejected"></tbody></table>
      <table class="cards"><caption>Avertissements (lignes prises en compte)</caption>
        <thead><tr><th>Motif</th><th class="num">Nombre</th></tr></thead><tbody id="warnings"></tbody></table>
    </div>
    <div class="buttons">
      <button id="show-samples" type="button" class="secondary">Voir des exemples de lignes</button>
      <a id="rejects-csv" class="button secondary" download>Télécharger les exemples (CSV)</a>
    </div>
    <div id="samples-box" hidden>
      <table class="cards"><caption>Exemples de lignes des sources, par motif (lues maintenant)</caption>
        <thead><tr><th>Motif</th><th>Table</th><th>Ligne (id)</th><th>Colonne</th><th>Valeur</th></tr></thead>
        <tbody id="samples"></tbody></table>
    </div>
  </section>
</main>
"""


def _body(api: str) -> str:
    """The page's sections; the live one (admin_live.py) right after the current run, the search box last."""
    anchor = "<!-- section: targeted refresh -->"
    body = _BODY.replace(anchor, live_section(api) + "\n  " + anchor)
    return body.replace("</main>", explain_section(api) + "</main>")


def admin_html(api: str) -> str:
    """The page for the JSON routes under ``api`` (e.g. ``/api/build/summary``), as one HTML string.

    The URLs are embedded as a JSON object (escaped for a ``<script>`` block),
    so a host prefix of any spelling cannot break out of the script; the
    script builds every text node with ``textContent`` (no HTML from data).
    """
    urls = {"start": api, "status": f"{api}/status", "history": f"{api}/history", "cancel": f"{api}/cancel",
            "rejects": f"{api}/rejects", "rejects_csv": f"{api}/rejects.csv"}
    literal = json.dumps(urls).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (
        '<!doctype html>\n<html lang="fr">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<link rel=\"icon\" href=\"data:,\">\n<title>Reconstruction de la table siret_summary</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>{_body(api)}<script>\n\"use strict\";\nconst API = {literal};\n"
        f"{SCRIPT}</script>\n</body>\n</html>\n"
    )
