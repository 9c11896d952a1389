"""Helpers of the adversarial tests of the cheaper warm runs (issue 28, session 4): a demo source on
PostgreSQL, and one INSERT of new establishments as an import brings them."""

from __future__ import annotations

import random

from watchutil import _luhn_siret

from siret_summary.demo_data import generate, write_postgres

#: The target of the tests that do not use a watcher's (the library's own layout, not the legacy table)
TABLE = "adv4_summary"


def load(location: str, seed: int = 4, n_pv: int = 1_200) -> None:
    write_postgres(location, *generate(n_pv=n_pv, n_invitations=150, seed=seed, sqlite_mess=False))


def new_pv_rows(count: int, first_id: int) -> str:
    """One INSERT of ``count`` PV rows, each a new valid SIRET (Luhn), as one import would bring them."""
    rng = random.Random(first_id)
    values = ", ".join(
        f"({first_id + i}, 'C4', '{_luhn_siret(rng)}', '2023-03-1{i % 10}', 'CSE', {30 + i % 50}, 20, 19,"
        f" {i % 19}, 2, '75')"
        for i in range(count)
    )
    return ('INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants,'
            f' num_sve, "score_CGT", "score_CFDT", "UD") VALUES {values}')
