"""Issue 24 case 2: a least-privilege role runs once the tables exist; a missing CREATE is named.

The roles get exactly the README's ``GRANT`` lines ("PostgreSQL privileges"),
with ``CREATE`` on ``public`` revoked from ``PUBLIC`` (PostgreSQL 15's default).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_postgres

from dbutil import execute, scalar

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_grants() -> list[list[str]]:
    """The README's privilege section: its SQL blocks (first run, runs, capture runs, source writers)."""
    text = README.read_text()
    section = text.split("## PostgreSQL privileges", 1)[1].split("\n## ", 1)[0]
    return [[line for line in block.strip().splitlines() if line.strip()]
            for block in re.findall(r"```sql\n(.*?)```", section, re.S)]


def _as_role(uri: str, role: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname or ''}"))


@dataclass
class Roles:
    owner: str  # the database's URI as its owner
    app: str  # as app_role (runs the library)
    importer: str  # as importer_role (writes the sources)
    app_role: str
    grant: Callable[..., None]  # grant(n, lines=slice(None)): runs (lines of) the README's n-th GRANT block


@pytest.fixture
def roles(pg_db, pg_uri):
    suffix = uuid.uuid4().hex[:8]
    app, importer = f"app_role_{suffix}", f"importer_role_{suffix}"
    database = urlsplit(pg_db).path.lstrip("/")
    execute(pg_db, f"CREATE ROLE {app} LOGIN", f"CREATE ROLE {importer} LOGIN",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC")

    def grant(block: int, lines: slice = slice(None)) -> None:
        execute(pg_db, *(re.sub(r"\bapp_role\b", app, re.sub(r"\bimporter_role\b", importer, line))
                         .replace(" DATABASE app ", f' DATABASE "{database}" ') for line in _readme_grants()[block][lines]))

    try:
        yield Roles(pg_db, _as_role(pg_db, app), _as_role(pg_db, importer), app, grant)
    finally:
        execute(pg_db, f"DROP OWNED BY {app}, {importer}")
        execute(pg_uri, f"DROP ROLE {app}", f"DROP ROLE {importer}")


def test_the_readme_lists_four_grant_blocks():
    blocks = _readme_grants()
    assert len(blocks) == 4 and all(line.startswith("GRANT ") for block in blocks for line in block)


@pytest.mark.slow
def test_runs_need_no_create_once_the_tables_exist(roles):
    owner, app, grant = roles.owner, roles.app, roles.grant
    write_postgres(owner, *generate(n_pv=300, n_invitations=40, seed=24, sqlite_mess=False))
    siret_summary.install_change_capture(owner)
    assert siret_summary.run(owner).status == "completed"  # the first run, by the owner, creates the tables
    grant(1)
    assert not scalar(app, "SELECT has_schema_privilege('public', 'CREATE')")
    full = siret_summary.run(app, mode="full")
    assert (full.status, full.mode) == ("completed", "full")
    # Without the capture grants a run scans and says why; with them it consumes the log.
    execute(owner, 'UPDATE "Tous_PV" SET num_inscrits = coalesce(num_inscrits, 0) + 7'
                   ' WHERE id_pv = (SELECT min(id_pv) FROM "Tous_PV")')
    scan = siret_summary.run(app)
    assert (scan.status, scan.mode) == ("completed", "incremental") and scan.fallback
    grant(2)
    grant(3)
    execute(owner, f'GRANT SELECT, UPDATE ON "Tous_PV" TO {roles.app_role.replace("app_role", "importer_role")}')
    modes = []
    for k in range(2):  # the first run after the grants scans (the last one could not record the capture)
        execute(roles.importer, 'UPDATE "Tous_PV" SET num_inscrits = coalesce(num_inscrits, 0) + 7'
                                f' WHERE id_pv = (SELECT id_pv FROM "Tous_PV" ORDER BY id_pv DESC LIMIT 1 OFFSET {k})')
        modes.append(siret_summary.run(app).mode)
    assert modes[-1] == "capture", modes
    assert siret_summary.status(app)["status"] == "completed"


@pytest.mark.slow
def test_a_first_run_without_create_names_the_privilege(roles):
    owner, app, grant = roles.owner, roles.app, roles.grant
    write_postgres(owner, *generate(n_pv=300, n_invitations=40, seed=25, sqlite_mess=False))
    grant(1, slice(0, 2))  # the schema and the sources: the library's tables do not exist yet
    role = roles.app_role
    with pytest.raises(siret_summary.TargetError) as raised:
        siret_summary.run(app)
    message = str(raised.value)
    assert f'the role "{role}" may not create' in message and 'CREATE privilege on schema "public"' in message
    assert f'GRANT CREATE ON SCHEMA "public" TO "{role}"' in message and "cannot connect" not in message
    assert raised.value.stage == "lock"
    # Nothing is left holding the lock: the owner's first run goes ahead, then the role's runs do.
    assert siret_summary.run(owner).status == "completed"
    grant(1)  # the tables the owner created
    assert siret_summary.run(app, mode="full").status == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("revoked, where", [
    ("INSERT ON siret_summary_runs", "run status store"),
    ("UPDATE ON siret_summary_lock_holders", "lock"),
    ("DELETE ON siret_summary", "siret_summary"),
])
def test_any_other_refused_privilege_points_at_the_readme(roles, revoked, where):
    """Neighbour: a grant missing on one of the tables (the server names the table): the fix is the README's list."""
    write_postgres(roles.owner, *generate(n_pv=300, n_invitations=40, seed=26, sqlite_mess=False))
    assert siret_summary.run(roles.owner).status == "completed"
    roles.grant(1)
    execute(roles.owner, f"REVOKE {revoked} FROM {roles.app_role}",
            'UPDATE "Tous_PV" SET num_inscrits = coalesce(num_inscrits, 0) + 9')  # every row: the write deletes
    with pytest.raises(siret_summary.TargetError) as raised:
        siret_summary.run(roles.app, mode="full")
    message = str(raised.value)
    assert "permission denied" in message and where in message, message
    assert 'the README lists under "PostgreSQL privileges"' in message and "cannot connect" not in message
