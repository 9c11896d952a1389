"""What a role may do: the library's own tables created only when missing, a refused privilege named (SPEC §2).

PostgreSQL checks the schema's ``CREATE`` privilege even for ``CREATE TABLE IF
NOT EXISTS`` on a table that exists, so an application role without it
(the default on ``public`` since PostgreSQL 15) could never run. The library
looks first and creates only what is missing: once its tables exist (a first
run by their owner), runs need no ``CREATE`` (README, "Privileges").
"""

from __future__ import annotations

from typing import Any

from siret_summary.db.base import Backend, split_table
from siret_summary.errors import TargetError

#: SQLSTATE of "permission denied" (insufficient_privilege).
INSUFFICIENT_PRIVILEGE = "42501"


def missing_privilege(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it wraps) is the server's "permission denied"."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def create_missing(backend: Backend, conn: Any, table: str, create_sql: str, *, exists: bool | None = None) -> bool:
    """Run ``create_sql`` (which creates ``table``, a ``schema.table`` or bare name) only when ``table`` is missing.

    ``exists``: already known (else :meth:`Backend.describe` is asked). Returns
    whether it created the table. A refused ``CREATE`` raises
    :class:`~siret_summary.errors.TargetError` naming the role, the privilege,
    the schema and the ``GRANT`` that fixes it; the caller's transaction is
    then rolled back.
    """
    if exists is None:
        exists = backend.describe(conn, table) is not None
    if exists:
        return False
    # Two sessions creating one shared table at once (two targets' first runs sharing the state): the
    # second would fail on the catalogue's unique index, IF NOT EXISTS or not. One at a time, and the
    # second looks again once the first's transaction ended (docs/decisions.md, "Warm runs").
    if backend.serialize_creation(conn, table) and backend.describe(conn, table) is not None:
        return False
    who = _who(backend, conn, table)
    try:
        backend.execute(conn, create_sql)
    except Exception as exc:
        if not missing_privilege(exc) or who is None:
            raise
        raise refused_create(table, *who) from exc
    return True


def _who(backend: Backend, conn: Any, table: str) -> tuple[str, str] | None:
    """The session's role and the schema ``table`` goes in (None where the database has no roles)."""
    if not backend.is_server:
        return None
    parts = split_table(table)
    schema = parts[0] if len(parts) == 2 else None
    row = backend.fetch_arrow(
        conn, "SELECT current_user::text AS role, coalesce($1::text, current_schema()::text) AS schema", [schema]
    ).to_pylist()[0]  # fmt: skip
    return str(row["role"]), str(row["schema"] or "public")


def refused_create(table: str, role: str, schema: str) -> TargetError:
    """The one sentence for a ``CREATE`` the role may not run."""
    problem = (f'the role "{role}" may not create {table}: it lacks the CREATE privilege on schema "{schema}" '
               "(the library creates its tables only when they are missing)")
    return TargetError(
        f"{problem}; run once as the schema's owner so the tables exist, or have the owner run "
        f'GRANT CREATE ON SCHEMA "{schema}" TO "{role}" (see the README, "Privileges").', problem=problem,
    )


#: The fix of any other refused privilege (SELECT, INSERT, ... on one of the tables).
GRANT_HINT = 'grant the role the privileges the README lists under "PostgreSQL privileges" (GRANT lines)'


def refused_privilege(exc: BaseException, what: str, reason: str) -> TargetError | None:
    """For a "permission denied" ``exc``: one sentence (``what`` could not be done, the server's ``reason``,
    the fix); else None."""
    if not missing_privilege(exc):
        return None
    return TargetError(f"{what}: the role lacks a privilege ({reason}); {GRANT_HINT}.")
