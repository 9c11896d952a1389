"""The admin page's history and rejected-rows sections (issue 29): table, status filter, SVG chart, samples.

Part of the page's script (:data:`siret_summary.admin_script.SCRIPT` places it
after the shared words and formats it uses, before the polling that calls
``showHistory``). Every text node is built with ``textContent``.
"""

HISTORY_SCRIPT = r"""
// ===== section: history (table, filter, chart of durations) =====
let runs = [];
function showHistory(list) {
  runs = list;
  const body = $("history"), wanted = $("filter").value;
  body.replaceChildren();
  const shown = runs.filter((run) => !wanted || run.status === wanted);
  if (!shown.length) {
    emptyRow(body, runs.length ? "Aucune reconstruction de ce statut."
                               : "Aucune reconstruction n'a encore été lancée.", 9);
  }
  for (const run of shown) {
    const r = obj(run.result);
    const tr = el("tr");
    tr.dataset.runId = run.run_id;
    tr.dataset.status = run.status;
    cell(tr, null, "Statut").append(badge(run.status));
    cell(tr, word(MODE, r.mode || (run.parameters && run.parameters.mode)), "Mode");
    cell(tr, fmtDate(run.started_at), "Début", "nowrap");
    cell(tr, fmtSeconds(run.status === "running" ? run.elapsed_seconds : run.duration_seconds), "Durée", "num");
    cell(tr, fmtInt(r.rows), "Lignes", "num");
    cell(tr, fmtInt(r.inserted), "Insérées", "num");
    cell(tr, fmtInt(r.updated), "Mises à jour", "num");
    cell(tr, fmtInt(r.deleted), "Supprimées", "num");
    cell(tr, shortProblem(run), "Problème", run.status === "failed" || run.status === "interrupted" ? "error" : "");
    body.append(tr);
  }
  showChart(runs);
  showCounts(runs.find((run) => run.status === "completed" && run.result && typeof run.result === "object"));
}
const SVG = "http://www.w3.org/2000/svg";
const COLOR = {
  completed: "#1c7c3a", failed: "#b42318", interrupted: "#b42318", cancelled: "#b07a00", running: "#1f5fbf",
};
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}
function showChart(list) {
  const box = $("chart");
  box.replaceChildren();
  const done = list.filter((run) => num(run.duration_seconds) !== null).slice(0, 40).reverse();
  if (!done.length) return;
  const W = Math.max(280, Math.round(box.clientWidth || 600)), H = 150, top = 18, bottom = 20, left = 4;
  const max = Math.max(...done.map((run) => run.duration_seconds), 0.1);
  const step = (W - left) / done.length, barW = Math.max(2, Math.min(28, step * 0.7));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", id: "duration-chart",
    "aria-label": "Durée des " + done.length + " dernières reconstructions, la plus ancienne à gauche ; "
      + "la plus longue : " + fmtSeconds(max) });
  chart.append(svg("line", { x1: 0, x2: W, y1: H - bottom, y2: H - bottom, stroke: "#d9dee5" }));
  done.forEach((run, i) => {
    const h = Math.max(1, (H - top - bottom) * run.duration_seconds / max);
    const bar = svg("rect", { x: left + i * step + (step - barW) / 2, y: H - bottom - h, width: barW, height: h,
      fill: COLOR[run.status] || "#5b6573", "data-status": run.status });
    const title = svg("title");
    title.textContent = fmtDate(run.started_at) + " : " + fmtSeconds(run.duration_seconds)
      + " (" + word(STATUS, run.status) + ")";
    bar.append(title);
    chart.append(bar);
  });
  const label = svg("text", { x: W - 2, y: 12, "text-anchor": "end", "font-size": 12, fill: "#5b6573" });
  label.textContent = "max " + fmtSeconds(max);
  const axis = svg("text", { x: 2, y: H - 4, "font-size": 12, fill: "#5b6573" });
  axis.textContent = "plus ancienne → plus récente";
  chart.append(label, axis);
  box.append(chart);
  const legend = el("p", "Vert : terminée ; rouge : échouée ou interrompue ; ocre : annulée. "
                         + "Survolez une barre pour sa date.", "legend");
  box.append(legend);
}
$("filter").addEventListener("change", () => showHistory(runs));

// ===== section: rejected rows =====
function showCounts(done) {
  for (const [id, key, none] of [["rejected", "rejected", "Aucune ligne rejetée."],
                                 ["warnings", "warnings", "Aucun avertissement."]]) {
    const target = $(id);
    target.replaceChildren();
    const counts = done ? Object.entries(obj(done.result[key])).sort() : [];
    if (!counts.length) emptyRow(target, done ? none : "Aucune reconstruction terminée.", 2);
    for (const [code, count] of counts) {
      const tr = el("tr");
      tr.dataset.reason = code;
      const td = cell(tr, reason(code), "Motif");
      td.title = code;
      cell(tr, fmtInt(count), "Nombre", "num");
      target.append(tr);
    }
  }
}
async function showSamples() {
  const button = $("show-samples");
  button.disabled = true;
  say("Lecture des sources pour trouver des exemples…");
  try {
    const body = await getJSON(API.rejects + "?limit=5");
    if (body.status === "failed") {  // the sources cannot be read as configured: say why, in French
      const said = explain({ error_facts: body.error_facts });
      throw new Error(said ? said.text : body.message);
    }
    const target = $("samples");
    target.replaceChildren();
    const samples = body.samples || [];
    if (!samples.length) emptyRow(target, "Aucune ligne rejetée ni avertissement dans les sources.", 5);
    for (const s of samples) {
      const tr = el("tr");
      tr.dataset.reason = s.reason;
      cell(tr, reason(s.reason), "Motif"); cell(tr, s.table, "Table"); cell(tr, s.row_id ?? "—", "Ligne (id)");
      cell(tr, s.column ?? "—", "Colonne"); cell(tr, s.value ?? "(vide)", "Valeur");
      target.append(tr);
    }
    $("samples-box").hidden = false;
    say(samples.length + " exemples affichés.");
  } catch (err) {
    say("Les exemples n'ont pas pu être lus : " + err.message.replace(/\.$/, "") + ".");
  }
  button.disabled = false;
}
$("rejects-csv").href = API.rejects_csv;
$("show-samples").addEventListener("click", showSamples);

"""
