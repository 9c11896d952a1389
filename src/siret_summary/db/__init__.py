"""Database backends behind one interface (:class:`~siret_summary.db.base.Backend`).

Everything that knows a dialect lives in this package: the core backend
(:mod:`.base`), SQLite (:mod:`.sqlite`), PostgreSQL and its fast paths
(:mod:`.postgres`), the capabilities a backend may offer (:mod:`.capabilities`).
"""

from siret_summary.db.base import Backend, Column
from siret_summary.db.connect import connected, driver_reason, open_backend, open_connection

__all__ = ["Backend", "Column", "connected", "driver_reason", "open_backend", "open_connection"]
