"""A small host app that serves the siret_summary rebuild routes over the demo database.

Run it from the repository root::

    pip install -e '.[fastapi]'
    uvicorn examples.fastapi_app:app            # AUTO_BUILD_SUMMARY_ON_STARTUP=true to build at startup
    curl -X POST localhost:8000/api/build/summary -H 'X-API-Key: demo'
    curl localhost:8000/api/build/summary/status -H 'X-API-Key: demo'

The database path comes from ``SIRET_SUMMARY_DB`` (default ``./siret_summary_demo.db``);
a small demo database is generated there if it does not exist. The routes
require the header ``X-API-Key`` equal to ``$SIRET_SUMMARY_API_KEY`` (default
``demo``): stand-in for the host's real authentication.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import Depends, FastAPI, Header, HTTPException

from siret_summary.demo_data import generate, write_sqlite
from siret_summary.fastapi import SummaryBuilder

DB = Path(os.environ.get("SIRET_SUMMARY_DB", "siret_summary_demo.db")).resolve()
API_KEY = os.environ.get("SIRET_SUMMARY_API_KEY", "demo")

if not DB.exists():
    write_sqlite(DB, *generate(n_pv=20_000, n_invitations=3_000, seed=42))


def require_api_key(x_api_key: str | None = Header(default=None)) -> None:
    if x_api_key is None or not secrets.compare_digest(x_api_key, API_KEY):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")


builder = SummaryBuilder(str(DB))  # one builder shared by the routes and the startup build
app = FastAPI(title="siret_summary demo", lifespan=builder.lifespan)
app.include_router(builder.router(dependencies=[Depends(require_api_key)]))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
