"""Seeded generator of realistic, messy legacy source data, and writers for it.

`generate()` builds the two source tables of the legacy application
(``"Tous_PV"`` and ``invitations``) with every column their DDL declares and
with the mess found in the wild (SPEC §2–§3): SIRETs with spaces, a lost
leading zero or a ``.0`` suffix, cycles written ``Cycle 4`` or `` c3 ``, dates
in eight formats or as Excel serials, counts written ``1,5`` or ``1 234``,
carence rows, elections outside their cycle's window… `write_sqlite()` and
`write_postgres()` create the legacy tables from ``legacy_schema.sql`` and
bulk-load the data through ADBC.

Generation is vectorised: random numbers come from ``random.Random`` streams
(one per concern, seeded from ``seed``) turned into Polars series in bulk, so
126k PV rows take about 1.5 s, and a seed always gives the same tables.
"""

from siret_summary.demo_data.generate import generate
from siret_summary.demo_data.load import write_postgres, write_sqlite
from siret_summary.demo_data.schema import legacy_ddl

__all__ = ["generate", "legacy_ddl", "write_postgres", "write_sqlite"]
