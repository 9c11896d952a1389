"""The admin page's script (issue 29), in sections matching the page's (see :mod:`siret_summary.admin_page`).

Plain JavaScript, no library: it polls ``status`` (every 0.5 s while a run
runs, else 3 s), reloads ``history`` when a run starts or ends, and turns the
router's ``error_facts`` kinds (:func:`siret_summary.admin_facts.error_facts`)
into French sentences with the button that fixes them. Every text node is
built with ``textContent`` (no HTML from data). ``API`` is defined before it.
The history and rejected-rows sections live in :mod:`siret_summary.admin_history_script`;
a new section is one more module placed the same way.
"""

from siret_summary.admin_history_script import HISTORY_SCRIPT

_HEAD = r"""
// ===== shared: words, formats, requests =====
const STATUS = { running: "en cours", pending: "en attente", completed: "terminée", failed: "échouée",
                 cancelled: "annulée", interrupted: "interrompue", not_found: "aucune", damaged: "illisible" };
const STAGE = { pending: "démarrage", read: "lecture", compute: "calcul", write: "écriture", done: "terminée" };
const MODE = { full: "complète", incremental: "incrémentale", targeted: "SIRET donnés", auto: "automatique" };
const REASON = {
  "pv.siret_empty": "PV sans SIRET", "pv.siret_too_long": "PV au SIRET de plus de 14 chiffres",
  "pv.siret_scientific": "PV au SIRET abîmé par un tableur (notation 1,23E+13)",
  "invitations.siret_empty": "Invitation sans SIRET",
  "invitations.siret_too_long": "Invitation au SIRET de plus de 14 chiffres",
  "invitations.siret_scientific": "Invitation au SIRET abîmé par un tableur (notation 1,23E+13)",
  siret_luhn: "SIRET à la clé de contrôle fausse", date_unparsed: "Date illisible",
  count_negative: "Nombre négatif (compté 0)", count_unparsed: "Nombre illisible (compté 0)",
  count_too_large: "Nombre trop grand (compté 0)", text_not_utf8: "Texte mal encodé (pas en UTF-8)",
  text_nul: "Texte contenant un caractère nul" };
const STATE_MESSAGE = { running: "Reconstruction en cours.", completed: "Reconstruction terminée.",
  failed: "La reconstruction a échoué : l'explication est ci-dessus.",
  cancelled: "Reconstruction annulée : la table est restée telle qu'elle était.",
  interrupted: "La reconstruction a été interrompue : l'explication est ci-dessus." };
const $ = (id) => document.getElementById(id);
function word(map, key) {  // the French word for a code; the code itself when unknown, "—" when missing
  if (key === undefined || key === null || key === "") return "—";
  return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : String(key);
}
let lastKey = null, timer = null, current = null, lastOk = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
const TIME = { day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit",
               second: "2-digit", timeZoneName: "short" };
// A record may be damaged (a percent as text, a NULL time, a result that is not an object): show what is
// readable, "—" for the rest, never throw.
const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
function fmtDate(iso) {
  const d = typeof iso === "string" && iso ? new Date(iso) : null;
  return d && !isNaN(d.getTime()) ? d.toLocaleString("fr-FR", TIME) : "—";
}
function fmtSeconds(s) {
  s = num(s);
  if (s === null) return "—";
  if (s < 60) return s.toFixed(1).replace(".", ",") + " s";
  return Math.floor(s / 60) + " min " + String(Math.round(s % 60)).padStart(2, "0") + " s";
}
function fmtInt(n) { return num(n) === null ? "—" : n.toLocaleString("fr-FR"); }
function reason(code) { return word(REASON, code); }
function badge(status) {
  const b = el("span", word(STATUS, status), "badge");
  b.dataset.status = status;
  return b;
}
function cell(tr, text, label, cls) {
  const td = el("td", text, cls);
  td.dataset.label = label;
  tr.append(td);
  return td;
}
function emptyRow(body, text, span) {
  const td = el("td", text, "empty");
  td.colSpan = span; td.dataset.label = "";
  const tr = el("tr"); tr.append(td); body.append(tr);
}
class Unreachable extends Error {}
async function getJSON(url, options) {
  let response;
  try {
    response = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
  } catch (e) {
    throw new Unreachable("le serveur de l'application ne répond pas");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 503) throw new Unreachable("la base de données ne répond pas");
  if (response.status === 401 || response.status === 403) {
    throw new Error("accès refusé (session expirée ?) : rechargez la page et reconnectez-vous");
  }
  if (!response.ok && !(body && body.status)) {
    throw new Error("le serveur a répondu " + response.status + (body && body.detail ? " (" + body.detail + ")" : ""));
  }
  return body;
}
function say(text) { $("message").textContent = text; }

// ===== section: errors in French, with the button that fixes them =====
function explain(state) {
  const f = state.error_facts;
  if (!f) return null;
  const unchanged = " La table n'a pas été modifiée.";
  switch (f.kind) {
    case "cancelled": return { cls: "cancelled", text: "Reconstruction annulée." + unchanged };
    case "interrupted": return { text: "Le processus qui faisait la reconstruction s'est arrêté avant la fin "
      + "(redémarrage du serveur ?)." + unchanged + " Appuyez sur « Lancer ».", actions: ["start"] };
    case "shrink_guard": return { text: "La nouvelle table n'aurait plus que " + fmtInt(f.rows_after)
      + " lignes au lieu de " + fmtInt(f.rows_before) + " (" + fmtInt(f.rows_lost) + " lignes en moins) : "
      + "par précaution, rien n'a été écrit. Vérifiez que les procès-verbaux et les invitations sont complets ; "
      + "si cette baisse est voulue, appuyez sur « Forcer ».", actions: ["force"] };
    case "missing_column": return { text: "La table « " + f.table + " » n'a pas de colonne « " + f.column
      + " » (colonne attendue pour « " + f.key + " »)." + unchanged + " Faites corriger la correspondance des "
      + "colonnes par l'administrateur de l'application, puis appuyez sur « Lancer »." };
    case "missing_table": return { text: "La table « " + f.table + " » est introuvable dans la base." + unchanged
      + " Faites vérifier son nom par l'administrateur de l'application, puis appuyez sur « Lancer »." };
    case "no_state": return { text: "Aucune reconstruction complète ne correspond à la configuration actuelle."
      + unchanged + " Appuyez sur « Reconstruction complète ».", actions: ["full"] };
    case "target_unreachable": return { text: "La base de données de la table siret_summary ne répond pas."
      + unchanged + " Vérifiez que le serveur de base de données fonctionne, puis appuyez sur « Lancer »." };
    case "source_unreachable": return { text: "La base de données des procès-verbaux ne répond pas."
      + unchanged + " Vérifiez que son serveur fonctionne, puis appuyez sur « Lancer »." };
    case "unexpected": return { text: "Erreur inattendue." + unchanged
      + " Transmettez le détail technique ci-dessous à l'équipe technique." };
    default: return { text: "La reconstruction a échoué." + unchanged
      + " Le détail technique ci-dessous dit quoi corriger ; transmettez-le à l'équipe technique si besoin." };
  }
}
function shortProblem(run) {
  const f = run.error_facts;
  if (!f) return "";
  if (f.kind === "cancelled") return "annulée à la demande";
  if (f.kind === "shrink_guard") return "baisse refusée : " + fmtInt(f.rows_lost) + " lignes en moins";
  if (f.kind === "missing_column") return "colonne « " + f.column + " » absente";
  if (f.kind === "missing_table") return "table « " + f.table + " » introuvable";
  if (f.kind === "no_state") return "reconstruction complète nécessaire";
  if (f.kind === "target_unreachable" || f.kind === "source_unreachable") return "base injoignable";
  if (f.kind === "interrupted") return "processus arrêté";
  return "erreur (voir le détail en haut de page)";
}
let outcomeKey = null;
function focusAnswer() { ($("cancel").disabled ? $("message") : $("cancel")).focus(); }
function showOutcome(state) {
  const key = state.run_id + ":" + state.status + ":" + (state.error || "");
  if (key === outcomeKey) return;  // unchanged: keep its buttons (and the keyboard focus on them)
  outcomeKey = key;
  const box = $("outcome"), said = explain(state), actions = $("outcome-actions");
  const hadFocus = box.contains(document.activeElement);
  actions.replaceChildren();
  if (hadFocus) focusAnswer();
  box.hidden = !said;
  if (!said) return;
  box.className = "notice " + (said.cls || "error");
  $("outcome-text").textContent = said.text;
  $("outcome-detail").hidden = said.cls === "cancelled" || !state.error;
  $("outcome-raw").textContent = state.error || "";
  for (const action of said.actions || []) {
    if (action === "force") {
      const b = el("button", "Forcer", "force");
      b.type = "button"; b.id = "force";
      b.addEventListener("click", () => {
        const f = state.error_facts;
        const ok = window.confirm("Forcer la reconstruction ? La table passera de " + fmtInt(f.rows_before)
          + " à environ " + fmtInt(f.rows_after) + " lignes : elle perdra " + fmtInt(f.rows_lost) + " lignes.");
        if (ok) act(API.start, b, { force: true });
      });
      actions.append(b);
    } else if (action === "full") {
      const b = el("button", "Reconstruction complète"); b.type = "button";
      b.addEventListener("click", () => act(API.start, b, { mode: "full" }));
      actions.append(b);
    }
  }
}

// ===== section: current run =====
const ORDER = ["read", "compute", "write", "done"];
function showCurrent(state) {
  current = state;
  const running = state.status === "running" || state.status === "pending";
  const status = $("status");
  status.textContent = word(STATUS, state.status);
  status.dataset.status = state.status;
  const progress = obj(state.progress);
  $("stage").textContent = word(STAGE, progress.stage);
  $("started").textContent = fmtDate(state.started_at);
  $("elapsed-label").textContent = running ? "Temps écoulé" : "Durée";
  $("elapsed").textContent = fmtSeconds(running ? state.elapsed_seconds : state.duration_seconds);
  const percent = Math.round(Math.min(100, Math.max(0, num(progress.percent) || 0)));
  $("bar-fill").style.width = percent + "%";
  $("bar").setAttribute("aria-valuenow", String(percent));
  $("bar").setAttribute("aria-valuetext", percent + " %, étape " + $("stage").textContent);
  $("percent").textContent = percent + " %";
  const at = ORDER.indexOf(progress.stage);
  for (const li of $("steps").children) {
    const i = ORDER.indexOf(li.dataset.stage);
    li.dataset.state = at < 0 ? "" : i < at || progress.stage === "done" ? "done" : i === at ? "now" : "";
    if (i === at && running) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
  }
  showOutcome(state);
  showDetails(state);
  const focused = document.activeElement;
  for (const id of ["start", "full", "refresh-sirets"]) $(id).disabled = running;
  $("cancel").disabled = !running;
  if (focused && focused.disabled) $("message").focus();  // a disabled button loses the focus: keep it near
  return running;
}
function showDetails(state) {
  const dl = $("run-details"), r = obj(state.result), p = state.parameters, s = obj(r.seconds);
  dl.replaceChildren();
  const item = (name, value) => { const d = el("div"); d.append(el("dt", name), el("dd", value)); dl.append(d); };
  if (state.status === "not_found") return;
  item("Mode", word(MODE, r.mode || (p && p.mode)));
  if (p) {
    item("Demandée", "mode " + word(MODE, p.mode) + (p.force ? ", forcée" : "")
      + (p.sirets ? ", " + p.sirets.length + " SIRET : " + p.sirets.slice(0, 5).join(", ")
      + (p.sirets.length > 5 ? "…" : "") : ""));
  }
  item("Lecture", fmtSeconds(s.read)); item("Calcul", fmtSeconds(s.compute)); item("Écriture", fmtSeconds(s.write));
  if (num(r.rows) !== null) item("Lignes dans la table", fmtInt(r.rows));
}

"""

_TAIL = r"""
// ===== section: polling and actions =====
function markStale(err) {
  const box = $("stale");
  box.hidden = false;
  box.textContent = "Informations peut-être périmées : " + err.message
    + (lastOk ? " ; dernière réponse à " + lastOk.toLocaleTimeString("fr-FR", { timeZoneName: "short" }) : "")
    + ". Nouvel essai automatique dans quelques secondes.";
  $("main").classList.add("is-stale");
}
async function refresh() {
  clearTimeout(timer);
  let running = false;
  try {
    const state = obj(await getJSON(API.status));
    running = showCurrent(state);
    const key = (state.run_id || "") + ":" + state.status;
    if (key !== lastKey) {  // a run started or ended: the history changed, and the message follows
      if (lastKey !== null && STATE_MESSAGE[state.status]) say(STATE_MESSAGE[state.status]);
      lastKey = key;
      const runsNow = obj(await getJSON(API.history)).runs;
      showHistory(Array.isArray(runsNow) ? runsNow.map(obj) : []);
    }
    lastOk = new Date();
    $("updated").textContent = lastOk.toLocaleString("fr-FR", TIME);
    $("stale").hidden = true;
    $("main").classList.remove("is-stale");
  } catch (err) {
    if (err instanceof Unreachable) markStale(err); else say("Erreur : " + err.message + ".");
  }
  timer = setTimeout(refresh, running ? 500 : 3000);
}
async function act(url, button, body) {
  button.disabled = true;
  const options = { method: "POST" };
  if (body) { options.body = JSON.stringify(body); options.headers = { "Content-Type": "application/json" }; }
  try {
    const answer = await getJSON(url, options);
    if (answer && answer.status === "failed" && answer.error_facts) {
      showOutcome({ error_facts: answer.error_facts, error: answer.error });
    }
    say((answer && answer.message) || "");
  } catch (err) {
    say("Erreur : " + err.message + ".");
  }
  await refresh();
  // The pressed button may now be disabled: keep the keyboard focus on the page's answer.
  if (document.activeElement === document.body || document.activeElement === button) focusAnswer();
}
$("start").addEventListener("click", () => act(API.start, $("start")));
$("full").addEventListener("click", () => act(API.start, $("full"), { mode: "full" }));
$("cancel").addEventListener("click", () => act(API.cancel, $("cancel")));
$("targeted-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(API.start, $("refresh-sirets"), { sirets: $("sirets").value });
});
refresh();
"""

#: The whole script: shared words, errors, current run, then history and rejected rows, then polling.
SCRIPT = _HEAD + HISTORY_SCRIPT + _TAIL
