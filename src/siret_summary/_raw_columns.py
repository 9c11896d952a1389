"""Names of the columns a read adds to raw source rows, shared by the readers (db/) and the rules (rules/).

Pure names, no logic: the one place both layers may import without
depending on each other.
"""

#: Prefix of the column holding a SQLite source column's REAL cells (db/sqlite.py):
#: ``REAL_PREFIX + name`` is Float64, non-NULL where the cell is a REAL, and the
#: column ``name`` itself is NULL there (rules.columns.prepare merges them).
REAL_PREFIX = "__siret_summary_real:"

#: Columns a read by row stamps adds (db/postgres/stamps.py): the row's transaction
#: (4 bytes), its place (6 bytes), and the stamp hash that stands for its raw values.
XMIN, CTID, STAMP = "__siret_summary_xmin", "__siret_summary_ctid", "__siret_summary_stamp"
