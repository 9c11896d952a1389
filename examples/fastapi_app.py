"""A small host app that serves the siret_summary rebuild routes over the demo database.

Run it from the repository root::

    pip install -e '.[fastapi]'
    uvicorn examples.fastapi_app:app            # AUTO_BUILD_SUMMARY_ON_STARTUP=true to build at startup
    curl -X POST localhost:8000/api/build/summary -H 'X-API-Key: demo'
    curl localhost:8000/api/build/summary/status -H 'X-API-Key: demo'
    # admin page in a browser: http://localhost:8000/login?key=demo (sets a cookie, then redirects)

The database path comes from ``SIRET_SUMMARY_DB`` (default ``./siret_summary_demo.db``);
a small demo database is generated there if it does not exist. The routes
require the header ``X-API-Key`` (or, for a browser, the cookie ``api_key`` set
by ``/login?key=...``) equal to ``$SIRET_SUMMARY_API_KEY`` (default ``demo``):
stand-in for the host's real authentication.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import Cookie, Depends, FastAPI, Header, HTTPException
from fastapi.responses import RedirectResponse

from siret_summary.demo_data import generate, write_sqlite
from siret_summary.fastapi import SummaryBuilder

DB = Path(os.environ.get("SIRET_SUMMARY_DB", "siret_summary_demo.db")).resolve()
API_KEY = os.environ.get("SIRET_SUMMARY_API_KEY", "demo")

if not DB.exists():
    write_sqlite(DB, *generate(n_pv=20_000, n_invitations=3_000, seed=42))


def require_api_key(x_api_key: str | None = Header(default=None), api_key: str | None = Cookie(default=None)) -> None:
    given = x_api_key or api_key
    if given is None or not secrets.compare_digest(given, API_KEY):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")


builder = SummaryBuilder(str(DB))  # one builder shared by the routes and the startup build
app = FastAPI(title="siret_summary demo", lifespan=builder.lifespan)
app.include_router(builder.router(dependencies=[Depends(require_api_key)]))


@app.get("/login")
def login(key: str) -> RedirectResponse:
    """Stand-in for the host's login: keeps the key in a cookie and opens the admin page."""
    response = RedirectResponse("/admin/build/summary", status_code=303)
    response.set_cookie("api_key", key, httponly=True, samesite="strict")
    return response


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
