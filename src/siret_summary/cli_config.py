"""The CLI's settings: a TOML file (``--config``), flags over it, and error fixes worded for a shell.

A configuration file holds :class:`~siret_summary.Config` fields, plus the
``source`` and ``target`` the commands default to::

    # siret_summary.toml
    source = "postgresql://app@db/elections"   # default of --source
    target = "postgresql://app@db/reporting"   # default of --target (else the source)
    pv_table = "Tous_PV"
    invitations_table = "invitations"
    target_table = "siret_summary"
    cycles = [["C3", "2017-01-01", "2020-12-31"], ["C4", "2021-01-01", "2024-12-31"]]
    shrink_ratio = 0.5
    connect_timeout = 10   # seconds to connect to PostgreSQL
    lock_timeout = 30      # seconds the write waits for another session's lock

    [pv_columns]        # logical name = column in the table; false = no such column
    sve = "num_sve"
    ul = false

    [invitation_columns]
    date = "date_invitation"

Flags given on the command line win over the file. Read with the standard
library's ``tomllib``.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable
from typing import Any

from siret_summary.config import DEFAULT_INVITATION_COLUMNS, DEFAULT_PV_COLUMNS, Config
from siret_summary.db import open_backend
from siret_summary.db.masking import mask_location
from siret_summary.errors import ConfigError, LockWaitError, SiretSummaryError

#: Default target of ``status``, ``cancel`` and ``history`` when neither ``--target`` nor the file names one.
TARGET_VARIABLE = "SIRET_SUMMARY_TARGET"
DEMO_PATH = "siret_summary_demo.db"

_CONFIG_FIELDS = ("pv_table", "invitations_table", "target_table", "state_table", "status_table",
                  "shrink_ratio", "history", "retries", "connect_timeout", "lock_timeout", "cycles", "pv_columns",
                  "invitation_columns")
_FILE_KEYS = ("source", "target", *_CONFIG_FIELDS)


def add_config_flags(parser: argparse.ArgumentParser, *, sources: bool = True) -> None:
    """The flags that build a :class:`Config`; each overrides the ``--config`` file.

    ``sources=False`` (``status``, ``cancel``, ``history``): only ``--config`` and
    ``--table``, the settings that command reads; the source tables, columns and
    cycles do not apply to it.
    """
    group = parser.add_argument_group("configuration (each overrides the --config file)")
    group.add_argument("--config", metavar="FILE", help="TOML settings file (see `siret-summary --help`)")
    group.add_argument("--table", metavar="NAME", help="target table (default: siret_summary)")
    if not sources:
        return
    group.add_argument("--pv-table", metavar="NAME", help="source table of election minutes (default: Tous_PV)")
    group.add_argument("--invitations-table", metavar="NAME", help="source table of invitations (default: invitations)")
    group.add_argument("--pv-column", metavar="LOGICAL=COLUMN", action="append", default=[],
                       help=f"map a logical PV column to a column of the table; empty COLUMN: no such column "
                            f"(repeatable; logical names: {', '.join(DEFAULT_PV_COLUMNS)})")
    group.add_argument("--invitation-column", metavar="LOGICAL=COLUMN", action="append", default=[],
                       help=f"same for invitations (logical names: {', '.join(DEFAULT_INVITATION_COLUMNS)})")
    group.add_argument("--cycle", metavar="LABEL:FIRST:LAST", action="append", default=[],
                       help="an electoral cycle, e.g. C5:2025-01-01:2028-12-31 (repeatable, in column order; "
                            "replaces the default cycles)")


def read_file(path: str | None) -> dict[str, Any]:
    """The settings of a TOML file (``{}`` without one); unknown keys are an error."""
    if not path:
        return {}
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist; check the --config path.") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a folder; give the TOML file in it, such as --config "
                          f"{os.path.join(path, 'siret_summary.toml')}.") from None
    except OSError as exc:
        raise ConfigError(f"configuration file {path} cannot be read ({exc.strerror or exc}); "
                          "check the --config path and its permissions.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02X} at "
                          f"offset {exc.start}); save it as UTF-8.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML ({exc}); fix that line.") from None
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise ConfigError(f"configuration file {path} has unknown keys {', '.join(unknown)}; "
                          f"known ones are {', '.join(_FILE_KEYS)}.")
    for key in ("source", "target"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{key} in {path} is not text ({type(data[key]).__name__} {data[key]!r}); write it "
                              f"in quotes, such as {key} = \"app.db\" or {key} = \"postgresql://user@host/db\".")
    for key in ("pv_columns", "invitation_columns"):
        if key in data:
            if not isinstance(data[key], dict):
                raise ConfigError(
                    f"{key} in {path} is not a table; write it as [{key}] with logical = \"column\" lines."
                )
            data[key] = {k: None if v is False or v == "" else v for k, v in data[key].items()}  # no such column
    return data


def _pairs(items: list[str], flag: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items:
        logical, sep, column = item.partition("=")
        if not sep or not logical.strip():
            raise ConfigError(f"{flag} {item!r} is not LOGICAL=COLUMN; write it like {flag} sve=num_sve.")
        out[logical.strip()] = column.strip() or None
    return out


def _cycles(items: list[str]) -> list[tuple[str, str, str]]:
    cycles = []
    for item in items:
        parts = item.split(":")
        if len(parts) != 3:
            raise ConfigError(
                f"--cycle {item!r} is not LABEL:FIRST:LAST; write it like --cycle C5:2025-01-01:2028-12-31."
            )
        cycles.append((parts[0], parts[1], parts[2]))
    return cycles


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The file's settings with the command line's flags over them (memoised on ``args``)."""
    cached = getattr(args, "_settings", None)
    if isinstance(cached, dict):
        return cached
    data = read_file(getattr(args, "config", None))
    flags = {
        "target_table": getattr(args, "table", None),
        "pv_table": getattr(args, "pv_table", None),
        "invitations_table": getattr(args, "invitations_table", None),
        "cycles": _cycles(getattr(args, "cycle", [])) or None,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    for key, flag in (("pv_columns", "--pv-column"), ("invitation_columns", "--invitation-column")):
        given = _pairs(getattr(args, key.replace("columns", "column"), []), flag)
        if given:
            data[key] = {**data.get(key, {}), **given}
    args._settings = data
    return data


def config_from(args: argparse.Namespace) -> Config:
    """The :class:`Config` of this command line (file, then flags)."""
    data = settings(args)
    return Config(**{k: data[k] for k in _CONFIG_FIELDS if k in data})


def source_from(args: argparse.Namespace) -> str:
    """``--source``, else the file's ``source``; a usage error when neither gives one."""
    source = getattr(args, "source", None) or settings(args).get("source")
    if not source:
        raise ConfigError("no source database; pass --source URI_OR_PATH (or source = \"...\" in the --config file).")
    return str(source)


def target_from(args: argparse.Namespace, *, default_to_source: bool = False) -> str:
    """``--target``, else the file's ``target`` (or ``source``), else ``$SIRET_SUMMARY_TARGET``, else the demo file."""
    data = settings(args)
    target = getattr(args, "target", None) or data.get("target")
    if not target and default_to_source:
        return source_from(args)
    return str(target or data.get("source") or os.environ.get(TARGET_VARIABLE) or DEMO_PATH)


def shown(location: str) -> str:
    """A location as the user should read it: a SQLite file's absolute path, a URI without its password."""
    try:
        backend = open_backend(location, must_exist=False)
    except SiretSummaryError:
        return mask_location(location)
    path = getattr(backend, "path", None)
    return os.path.abspath(path) if path else backend.display()


# ---------------------------------------------------------------------- error wording

def _column_hint(exc: SiretSummaryError) -> str:
    flag = "--pv-column" if exc.setting == "pv_columns" else "--invitation-column"
    return (f"add it, or map another column with {flag} {exc.key}=COLUMN "
            f"(or {exc.key} = \"COLUMN\" under [{exc.setting}] in the --config file)")


_HINTS: dict[str, Callable[[SiretSummaryError], str]] = {
    "pv_columns": _column_hint,
    "invitation_columns": _column_hint,
    "pv_table": lambda exc: "create it, or name the right table with --pv-table NAME "
                            "(or pv_table = \"NAME\" in the --config file)",
    "invitations_table": lambda exc: "create it, or name the right table with --invitations-table NAME "
                                     "(or invitations_table = \"NAME\" in the --config file)",
    "target": lambda exc: "pass --target a writable SQLite path or a postgresql:// URI (the source may stay "
                          "read-only)",
    "location": lambda exc: f"check --target (else the --config file's target, else ${TARGET_VARIABLE})",
    "target_table": lambda exc: "name the table with --table NAME (or target_table = \"NAME\" in the --config file)",
    "state_table": lambda exc: "name it with state_table = \"NAME\" in the --config file",
    "status_table": lambda exc: "name it with status_table = \"NAME\" in the --config file",
    "force": lambda exc: "check the sources, or add --force if the shrink is intended",
    "mode": lambda exc: "run once with --mode full (or --mode auto)",
    "lock_timeout": lambda exc: (
        "end that transaction (COMMIT or ROLLBACK there, or SELECT pg_terminate_backend(pid)), "
        "or raise lock_timeout = SECONDS in the --config file"
    ) if isinstance(exc, LockWaitError) else "give lock_timeout = SECONDS (above 0) in the --config file",
    "connect_timeout": lambda exc: "give connect_timeout = SECONDS (above 0) in the --config file",
    "cycles": lambda exc: "give at least one --cycle LABEL:FIRST:LAST (or cycles = [[\"C5\", \"2025-01-01\", "
                          "\"2028-12-31\"]] in the --config file)",
}


def cli_message(exc: SiretSummaryError) -> str:
    """``exc``'s sentence with its fix worded for the command line (flags, TOML keys), not for Python."""
    hint = _HINTS.get(exc.setting or "")
    if hint is None or exc.problem is None:
        return str(exc)
    return f"{exc.problem}; {hint(exc)}."


# ------------------------------------------------------------------ flag value types

#: The largest count a flag takes: far above any real use, below every 64-bit limit downstream.
MAX_COUNT = 100_000_000


def at_least(minimum: int, maximum: int = MAX_COUNT) -> Any:
    """An argparse type: a whole number from ``minimum`` to ``maximum``, else one worded usage error."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}; give {minimum} or more")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is above {maximum}; give {maximum} or less")
        return value

    return whole_number


def utf8_text(text: str) -> str:
    """A flag's value that must be text: bytes that are not UTF-8 (shown as surrogates) are refused."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not UTF-8 text") from None
    return text
