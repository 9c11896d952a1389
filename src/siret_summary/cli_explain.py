"""``siret-summary explain --source URI SIRET [--json]``: one establishment's row explained (issue 27).

Prints :meth:`~siret_summary.explain.Explanation.to_text` (French prose), or
with ``--json`` :meth:`~siret_summary.explain.Explanation.to_dict`. Exit 0
whenever an explanation was made, even when the SIRET has no row (the text
says why); exit 2 with one sentence worded for the command line when the
SIRET argument holds no digit or the source is unusable. Nothing is written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from siret_summary.cli_config import add_config_flags, config_from, source_from
from siret_summary.errors import ConfigError
from siret_summary.explain import explain

__all__ = ["add_explain_command"]


def _explain(args: argparse.Namespace) -> int:
    try:
        explanation = explain(source_from(args), args.siret, config=config_from(args))
    except ConfigError as exc:
        if exc.setting != "siret":
            raise
        raise ConfigError(f"{exc.problem}; give the SIRET argument as the establishment's 14 digits "
                          "(spaces, a trailing .0 or 13 digits are read as in the sources), "
                          "e.g. siret-summary explain --source app.db '479 766 842 00724'.") from exc
    if args.json:
        print(json.dumps(explanation.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(explanation.to_text(), end="")
    return 0


def add_explain_command(command: Callable[[str, str, Any], argparse.ArgumentParser],
                        source_flag: Callable[[argparse.ArgumentParser], None]) -> None:
    """Declare ``explain`` with ``command(name, help, func)`` and ``source_flag(parser)`` of cli.build_parser."""
    p = command("explain", "explain one establishment's row: its source rows, normalisations and seat rounds "
                           "(nothing is written)", _explain)
    source_flag(p)
    p.add_argument("siret", help="the SIRET, written as the sources may hold it ('479 766 842 00724', 13 digits)")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    add_config_flags(p)
