"""The explain route of the FastAPI face (issue 27): ``GET {prefix}/build/summary/explain/{siret}``
(any text after ``explain/``, slashes included) and ``GET …/explain?siret=…`` (the admin page's box).

Answers :meth:`~siret_summary.explain.Explanation.to_dict` (``?format=text``:
the French prose of ``to_text()``); HTTP 404 with a French sentence when no
source row has that SIRET, 400 when the SIRET holds no digit, 503 when the
source cannot be read. Read-only: nothing is written anywhere.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from siret_summary.config import Config, Source
from siret_summary.errors import ConfigError, SiretSummaryError
from siret_summary.explain import explain

__all__ = ["explain_response"]


def explain_response(source: Source, siret: str, config: Config, fmt: str) -> Response | dict[str, Any]:
    """The route's answer for ``siret`` read from ``source`` (see the module doc)."""
    try:
        explanation = explain(source, siret, config=config)
    except ConfigError as exc:
        if exc.setting != "siret":
            raise
        what = f"Le SIRET « {siret} » ne contient aucun chiffre" if siret.strip() else "Aucun SIRET indiqué"
        return JSONResponse(status_code=400, content={
            "status": "error", "siret": siret,
            "message": f"{what} : indiquez les 14 chiffres de "
                       "l'établissement (espaces et « .0 » final acceptés)."})
    except SiretSummaryError as exc:
        return JSONResponse(status_code=503, content={"status": "error", "siret": siret, "message": str(exc)})
    facts = explanation.to_dict()
    if not facts["pv_rows"] and not facts["invitations"]:
        shown = explanation.siret or siret
        return JSONResponse(status_code=404, content={
            "status": "not_found", "siret": shown,
            "message": f"Aucune ligne des procès-verbaux ni des invitations ne porte le SIRET {shown}."})
    if fmt == "text":
        return PlainTextResponse(explanation.to_text())
    return facts
