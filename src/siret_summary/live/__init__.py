"""The live summary: :func:`watch` keeps the target fresh after each committed change (issue 28).

Modules: ``loop`` (watch(): coalescing, runs, backoff), ``signals`` (the signal protocol, PostgreSQL
polls), ``signal_notify`` (LISTEN/NOTIFY through psycopg), ``signal_sqlite`` (``PRAGMA data_version``
and the file's identity), ``status`` (:class:`LiveStatus`).
"""

from siret_summary.live.loop import watch
from siret_summary.live.status import LiveStatus

__all__ = ["LiveStatus", "watch"]
