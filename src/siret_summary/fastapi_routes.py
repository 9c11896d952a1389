"""The route table of the FastAPI face (SPEC §8): one short handler per route, next to its path.

Built by :meth:`siret_summary.fastapi.SummaryBuilder.router`; every route is
guarded by the host's ``dependencies``. Plain ``def`` endpoints: FastAPI runs
them in its threadpool, so the short wait for the lock decision, the status
reads and the rejected-row samples never block the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, params
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from siret_summary.admin_facts import error_facts, parse_sirets, rejects_csv, shortened
from siret_summary.admin_page import admin_html
from siret_summary.errors import SiretSummaryError
from siret_summary.fastapi_explain import explain_response
from siret_summary.runs.records import TASK_ID

if TYPE_CHECKING:  # pragma: no cover
    from siret_summary.fastapi import SummaryBuilder

MESSAGE_STARTED = "La reconstruction de la table siret_summary a été lancée en arrière-plan"
MESSAGE_ALREADY_RUNNING = "Une reconstruction est déjà en cours"
MESSAGE_NOT_FOUND = "Aucune reconstruction de la table siret_summary n'a encore été lancée"
MESSAGE_CANCELLING = "L'annulation de la reconstruction a été demandée"
MESSAGE_NOT_RUNNING = "Aucune reconstruction n'est en cours"
MESSAGE_FAILED_TO_START = "La reconstruction n'a pas pu démarrer"
MESSAGE_NO_SIRET = "Aucun SIRET reconnu : saisissez des SIRET de 14 chiffres, un par ligne"
MESSAGE_BAD_SIRETS = "Ces entrées ne sont pas des SIRET (14 chiffres attendus) : {bad}"
MESSAGE_TOO_MANY = "Il y a trop de SIRET (1000 au plus) : {count} saisis, lancez-les en plusieurs fois"
MESSAGE_BAD_BODY = ("Demande invalide ({fields}) : mode vaut « auto », « full » ou « incremental », force vaut "
                    "true ou false, sirets est une liste ou un texte")
MESSAGE_UNREADABLE = "La base de données ne répond pas"
MESSAGE_REJECTS_FAILED = "Les lignes rejetées n'ont pas pu être lues"


class StartRequest(BaseModel):
    """The optional JSON body of ``POST {prefix}/build/summary``; absent, the builder's own settings apply.

    ``mode``: ``auto``, ``full`` or ``incremental`` (default: the builder's);
    ``force``: write even when the shrink guard would refuse (default: the
    builder's); ``sirets``: refresh only these SIRETs (a list, or one text with
    one SIRET per line, or separated by ``,`` or ``;``; at most 1000).
    Strict: no other key, and no ``"yes"`` or ``1`` for a boolean.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    mode: Literal["auto", "full", "incremental"] | None = None
    force: bool | None = None
    sirets: list[str] | str | None = None


def _invalid_body(exc: ValidationError) -> JSONResponse:
    fields = sorted({shortened(str(e["loc"][0]) if e["loc"] else "corps", 20) for e in exc.errors()})
    return JSONResponse(status_code=422, content={"status": "invalid", "task_id": TASK_ID, "kind": "body",
                                                  "message": MESSAGE_BAD_BODY.format(fields=", ".join(fields[:5]))})


def _invalid_sirets(bad: list[str], extra: list[str], limit: int = 1000) -> JSONResponse:
    """422 naming the entries that are no SIRET (each shortened) and/or that there are too many."""
    shown = [shortened(entry) for entry in bad[:20]]
    messages = [MESSAGE_BAD_SIRETS.format(bad=", ".join(shown[:10]))] if bad else []
    if extra:
        messages.append(MESSAGE_TOO_MANY.format(count=limit + len(extra)))
    message = " ; ".join(messages) or MESSAGE_NO_SIRET
    return JSONResponse(status_code=422, content={"status": "invalid", "task_id": TASK_ID, "kind": "sirets",
                                                  "message": message, "bad": shown})


def _unreadable(exc: SiretSummaryError) -> JSONResponse:
    return JSONResponse(status_code=503, content={"status": "error", "task_id": TASK_ID, "kind": "unreachable",
                                                  "message": MESSAGE_UNREADABLE, "error": str(exc)})


def _rejects_failed(exc: SiretSummaryError, builder: SummaryBuilder) -> JSONResponse:
    facts = error_facts(str(exc), "failed", builder.config)
    if facts and facts["kind"] in ("target_unreachable", "source_unreachable"):
        return _unreadable(exc)
    return JSONResponse(status_code=500, content={"status": "failed", "task_id": TASK_ID, "error": str(exc),
                                                  "message": MESSAGE_REJECTS_FAILED, "error_facts": facts})


def build_routes(
    builder: SummaryBuilder, *, dependencies: Sequence[params.Depends], prefix: str, admin_path: str | None
) -> APIRouter:
    """The JSON routes under ``{prefix}/build/summary`` and the admin page at ``admin_path``.

    See :meth:`SummaryBuilder.router` for the routes' shapes and errors.
    """
    api = prefix.rstrip("/") + "/build/summary"
    page = None if admin_path is None else "/" + admin_path.strip("/")
    router = APIRouter(dependencies=list(dependencies), tags=["siret_summary"])

    def annotated(state: dict[str, Any]) -> dict[str, Any]:
        """A status JSON with ``error_facts`` (see admin_facts.error_facts) and this builder's ``parameters``."""
        out = dict(state)
        out["error_facts"] = error_facts(state.get("error"), str(state.get("status")), builder.config)
        out["parameters"] = builder.parameters_of(state.get("run_id"))
        return out

    @router.post(api, summary="Start a rebuild of siret_summary in the background", openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": StartRequest.model_json_schema()}}}})
    def start_build(request: Request, raw: Annotated[Any, Body()] = None) -> Any:
        try:  # validated here, not by FastAPI: its 422 would echo the whole input (F15)
            body = StartRequest() if raw is None else StartRequest.model_validate(raw)
        except ValidationError as exc:
            return _invalid_body(exc)
        sirets = None
        if body.sirets is not None:
            text = body.sirets if isinstance(body.sirets, str) else "\n".join(body.sirets)
            sirets, bad, extra = parse_sirets(text)
            if bad or extra or not sirets:
                return _invalid_sirets(bad, extra)
        outcome = builder.start(mode=body.mode, force=body.force, sirets=sirets)
        if outcome["status"] == "already_running":
            return {"status": "already_running", "message": MESSAGE_ALREADY_RUNNING,
                    "task_id": TASK_ID, "started_at": outcome["started_at"]}
        if outcome["status"] == "failed":
            return JSONResponse(status_code=500, content={
                "status": "failed", "message": MESSAGE_FAILED_TO_START, "task_id": TASK_ID,
                "error": outcome["error"], "error_facts": error_facts(outcome["error"], "failed", builder.config)})
        return {"status": outcome["status"], "message": MESSAGE_STARTED, "task_id": TASK_ID,
                "check_status_url": request.url.path.rstrip("/") + "/status"}

    @router.get(api + "/status", summary="Status of the latest siret_summary rebuild")
    def build_status() -> Any:
        try:
            state = builder.status()
        except SiretSummaryError as exc:
            return _unreadable(exc)
        if state is None:
            return {"status": "not_found", "task_id": TASK_ID, "message": MESSAGE_NOT_FOUND,
                    "live": builder.live.to_dict()}
        return {**annotated(state), "live": builder.live.to_dict()}  # live: fastapi_live.py (issue 28)

    @router.get(api + "/live", summary="How fresh the summary is (live=True's watcher); reads no database")
    def live_status() -> Any:
        return {"task_id": TASK_ID, "live": builder.live.to_dict()}

    @router.post(api + "/cancel", summary="Cancel the running siret_summary rebuild")
    def cancel_build() -> Any:
        try:
            requested = builder.cancel()
        except SiretSummaryError as exc:
            return _unreadable(exc)
        if requested:
            return {"status": "cancelling", "task_id": TASK_ID, "message": MESSAGE_CANCELLING}
        return {"status": "not_running", "task_id": TASK_ID, "message": MESSAGE_NOT_RUNNING}

    @router.get(api + "/history", summary="The last siret_summary rebuilds, newest first")
    def build_history(limit: int = Query(20, ge=1, le=1000)) -> Any:
        try:
            return {"task_id": TASK_ID, "runs": [annotated(run) for run in builder.history(limit)]}
        except SiretSummaryError as exc:
            return _unreadable(exc)

    @router.get(api + "/rejects", summary="Samples of the rejected and warned source rows, by reason")
    def rejects(limit: int = Query(5, ge=1, le=1000)) -> Any:
        try:
            return {"task_id": TASK_ID, **builder.rejects(limit)}
        except SiretSummaryError as exc:
            return _rejects_failed(exc, builder)

    # {siret:path}: any text reaches the handler ('/', '%2F', an empty segment), which answers in French.
    @router.get(api + "/explain/{siret:path}", summary="One establishment's row explained (fastapi_explain.py)")
    def explain_row(siret: str, format: str = Query("json", pattern="^(json|text)$")) -> Any:
        return explain_response(builder.source, siret, builder.config, format)

    # The admin page's box asks here (a '..' or '.' typed in a path would be resolved away by the browser).
    @router.get(api + "/explain", summary="The same, the SIRET as ?siret= (any text, '..' included)")
    def explain_query(siret: str = Query(""), format: str = Query("json", pattern="^(json|text)$")) -> Any:
        return explain_response(builder.source, siret, builder.config, format)

    @router.get(api + "/rejects.csv", summary="The rejected and warned source rows' samples as CSV")
    def rejects_as_csv(limit: int = Query(100, ge=1, le=100_000)) -> Any:
        try:
            samples = builder.rejects(limit)["samples"]
        except SiretSummaryError as exc:
            return _rejects_failed(exc, builder)
        return Response(rejects_csv(samples).encode("utf-8"), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="siret_summary_rejets.csv"', "Cache-Control": "no-store"})

    if page is not None:
        @router.get(page, response_class=HTMLResponse, include_in_schema=False)
        def admin_page(request: Request) -> HTMLResponse:
            # The JSON routes' URLs as the browser sees them: whatever prefix the
            # host mounted this router under precedes the page's own path.
            path = request.url.path.rstrip("/")
            mount = path[: -len(page)] if page != "/" and path.endswith(page) else ""
            return HTMLResponse(admin_html(mount + api), headers={"Cache-Control": "no-store"})

    return router
