"""Database backends behind one interface (:class:`~siret_summary.db.base.Backend`).

Everything that knows a dialect lives in this package: the core backend
(:mod:`.base`), SQLite (:mod:`.sqlite`, :mod:`.sqlite_location`, the worker),
PostgreSQL and its fast paths (:mod:`.postgres`), the capabilities a backend
may offer (:mod:`.capabilities`). Code above ``db/`` imports this package and
its dialect-free modules (base, capabilities, connect, masking, names,
privileges, side_files), never a dialect's own (tests/test_layers.py).
"""

from siret_summary.db.base import Backend, Column
from siret_summary.db.connect import connected, driver_reason, open_backend, open_connection
from siret_summary.db.sqlite_location import opens_read_only, read_only_folder_hint

__all__ = ["Backend", "Column", "connected", "driver_reason", "open_backend", "open_connection", "opens_read_only",
           "read_only_folder_hint"]
