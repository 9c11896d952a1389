"""Adversarial reproduction (adv15): failures on a captured source. Failed on the code it was written against; now pins the fix."""

from __future__ import annotations

import uuid

import pytest

import siret_summary

from advutil import edit, load
from dbutil import execute, read_table, scalar

CFG = siret_summary.Config(target_table="s_err", state_table="s_err_state")


@pytest.fixture
def reader(pg_uri):
    role = f"reader_{uuid.uuid4().hex[:8]}"
    execute(pg_uri, f"CREATE ROLE {role} LOGIN", autocommit=True)
    yield role  # left on the test server (dropped with it): its grants live in databases dropped after this


def _as(uri: str, role: str) -> str:
    return uri.replace("postgres:@", f"{role}:@")


@pytest.mark.slow
def test_a_read_only_role_on_a_captured_source_gets_a_driver_error_after_writing(pg_db, pg_uri, reader):
    """Least privilege: the run's role may SELECT the sources (and the log) but not DELETE from the log; the
    target is another database it owns. The run writes and commits the target, then the cross-database consume
    raises a bare adbc ProgrammingError (not a SiretSummaryError) and records 'failed ... the target is
    unchanged', which is false. Every later run does the same."""
    from conftest import fresh_database

    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    execute(pg_db, f'GRANT SELECT ON "Tous_PV", invitations, siret_summary_changes, siret_summary_changes_cursor TO {reader}')
    with fresh_database(pg_uri, "ro_target") as target:
        database = scalar(target, "SELECT current_database()")
        execute(target, f"GRANT ALL ON SCHEMA public TO {reader}", f'GRANT CREATE ON DATABASE "{database}" TO {reader}')
        execute(pg_db, edit())
        raised = None
        try:
            siret_summary.run(_as(pg_db, reader), _as(target, reader), config=CFG)
        except Exception as exc:  # noqa: BLE001
            raised = exc
        expected = siret_summary.compute(pg_db, config=CFG)
        written = scalar(target, "SELECT to_regclass('s_err') IS NOT NULL") and read_table(target, "s_err", expected).equals(expected)
        error = siret_summary.status(target, config=CFG)["error"] or ""
        problems = []
        if raised is not None and not isinstance(raised, siret_summary.SiretSummaryError):
            problems.append(f"bare {type(raised).__module__}.{type(raised).__name__}")
        if written and "unchanged" in error:
            problems.append(f"target written, yet the status says: ...{error[-60:]}")
        assert not problems, problems


def test_a_role_that_may_not_read_the_log_gets_a_driver_error(pg_db, reader):
    """The run's role may read the sources but not the change log: a bare ProgrammingError escapes (SPEC §9),
    where a typed error naming the log (or a scan, since capture cannot vouch) was expected."""
    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    execute(pg_db, f'GRANT SELECT ON "Tous_PV", invitations TO {reader}', f"GRANT ALL ON SCHEMA public TO {reader}")
    try:
        siret_summary.run(_as(pg_db, reader), config=CFG)
    except siret_summary.SiretSummaryError:
        pass
