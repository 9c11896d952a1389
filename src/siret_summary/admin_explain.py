"""The admin page's SIRET search box (issue 27): a section of its own, inserted by :func:`admin_page.admin_html`.

The box calls ``GET {api}/explain?siret=…&format=text`` (a query parameter: a ``..`` or ``/`` typed
in the box reaches the route as typed, where a path segment would be resolved away) with the page's
credentials (the host's authentication applies) and shows the French
explanation as text (``textContent``: nothing from the data is read as HTML).
"""

from __future__ import annotations

import json

__all__ = ["explain_section"]

_SECTION = """
  <section id="explain">
    <h2>Expliquer un établissement</h2>
    <form id="explain-form" class="row">
      <label for="explain-siret">SIRET</label>
      <input id="explain-siret" name="siret" autocomplete="off" placeholder="479 766 842 00724"
             style="font: inherit; padding: 6px 10px; min-width: 16em;">
      <button type="submit">Expliquer</button>
    </form>
    <pre id="explain-text" style="white-space: pre-wrap; font-size: 13px; margin-top: 12px;" hidden></pre>
  </section>
<script>
"use strict";
(function () {
  const URL = __EXPLAIN__;
  const form = document.getElementById("explain-form");
  const out = document.getElementById("explain-text");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const siret = document.getElementById("explain-siret").value.trim();
    out.hidden = false;
    if (!siret) { out.textContent = "Indiquez un SIRET."; return; }
    out.textContent = "Recherche…";
    try {
      const query = "?siret=" + encodeURIComponent(siret) + "&format=text";
      const response = await fetch(URL + query, { credentials: "same-origin" });
      const type = response.headers.get("content-type") || "";
      if (type.startsWith("application/json")) {
        const body = await response.json();
        out.textContent = body.message || ("HTTP " + response.status);
      } else {
        out.textContent = await response.text();
      }
    } catch (err) {
      out.textContent = "Erreur : " + err.message;
    }
  });
})();
</script>
"""


def explain_section(api: str) -> str:
    """The search box section for the JSON routes under ``api`` (e.g. ``/api/build/summary``)."""
    literal = json.dumps(f"{api}/explain").replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _SECTION.replace("__EXPLAIN__", literal)
