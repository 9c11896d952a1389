"""Configuration: cycles, table names, column mapping, and its hash.

The defaults reproduce the existing application's ``siret_summary``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

from siret_summary.errors import ConfigError

if TYPE_CHECKING:  # only named in the aliases below: importing them here would cost every import
    import polars as pl
    import pyarrow as pa

#: A database ``run``/``compute`` read or write: a ``postgresql://`` URI, a SQLite path or
#: ``sqlite:///`` / ``file:`` URI (SPEC §2).
Location: TypeAlias = "str | os.PathLike[str]"
#: One source table given in memory: a pyarrow Table, a Polars frame, or a Parquet path.
SourceTable: TypeAlias = "pa.Table | pl.DataFrame | pl.LazyFrame | str | os.PathLike[str]"
#: What ``compute(source)`` and ``run(source)`` read: a database, or ``{"Tous_PV": t, "invitations": t}``.
Source: TypeAlias = "Location | Mapping[str, SourceTable]"

#: Bumped whenever a rule of SPEC §3–§4 changes how a row is computed; part of
#: the configuration hash so stored incremental state is invalidated.
RULES_VERSION = "2"  # 2: La Poste's SIRET check, cp's 5-digit group, dep 977/978 (issue 25)

#: Unions in the order the spec lists them (also the tie-break order of seats).
UNIONS: tuple[str, ...] = ("cgt", "cfdt", "fo", "cftc", "cgc", "unsa", "sud", "autre")

#: logical name -> default column of "Tous_PV".
DEFAULT_PV_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "id": "id_pv",
        "cycle": "Cycle",
        "siret": "siret",
        "date": "date_scrutin",
        "institution": "institution",
        "inscrits": "num_inscrits",
        "votants": "num_votants",
        "sve": "num_sve",
        "voix_cgt": "score_CGT",
        "voix_cfdt": "score_CFDT",
        "voix_fo": "score_FO",
        "voix_cftc": "score_CFTC",
        "voix_cgc": "score_CGC",
        "voix_unsa": "score_UNSA",
        "voix_sud": "score_SOLIDAIRE",
        "voix_autre": "score_AUTRE",
        "fd": "FD",
        "ud": "UD",
        "idcc": "idcc",
        "raison_sociale": "raison_sociale",
        "cp": "cp",
        "ville": "ville",
        "region": "Région",
        "ul": "UL",
    }
)

#: logical name -> default column of "invitations".
DEFAULT_INVITATION_COLUMNS: Mapping[str, str] = MappingProxyType(
    {"id": "id", "siret": "siret", "date": "date_invit"}
)


@dataclass(frozen=True)
class Cycle:
    """One electoral cycle: a label (``C3``) and an inclusive date window."""

    label: str
    first: dt.date
    last: dt.date

    @property
    def suffix(self) -> str:
        """Column suffix of the cycle, e.g. ``c3``."""
        return self.label.lower()


DEFAULT_CYCLES: tuple[Cycle, ...] = (
    Cycle("C3", dt.date(2017, 1, 1), dt.date(2020, 12, 31)),
    Cycle("C4", dt.date(2021, 1, 1), dt.date(2024, 12, 31)),
)


#: What ``Config(cycles=...)`` takes for one cycle: a :class:`Cycle`, or a
#: ``(label, first day, last day)`` triple, days as dates or ``'YYYY-MM-DD'``.
CycleSpec = Cycle | tuple[str, str | dt.date, str | dt.date]

#: Defaults of Config's two waits, in seconds (also quoted by their error messages).
_DEFAULT_SECONDS: Mapping[str, float] = MappingProxyType({"connect_timeout": 10.0, "lock_timeout": 30.0})


def _as_date(value: object, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{what} is {value!r}, not a date; write it as 'YYYY-MM-DD'.")


def _as_cycle(item: object) -> Cycle:
    if isinstance(item, Cycle):
        label, first, last = item.label, item.first, item.last
    else:
        try:
            label, first, last = item  # type: ignore[misc]
        except (TypeError, ValueError):
            raise ConfigError(
                f"cycle {item!r} is not a (label, first day, last day) triple; "
                "write it like ('C5', '2025-01-01', '2028-12-31')."
            ) from None
    if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", label):
        raise ConfigError(
            f"cycle label {label!r} is not usable as a column suffix; "
            "use letters, digits and '_' starting with a letter, like 'C5'."
        )
    first_d = _as_date(first, f"the first day of cycle {label}")
    last_d = _as_date(last, f"the last day of cycle {label}")
    if first_d > last_d:
        raise ConfigError(
            f"cycle {label} starts on {first_d} after it ends on {last_d}; swap the two days."
        )
    return Cycle(label.upper(), first_d, last_d)


def _check_storable(name: str, what: str, kind: str) -> None:
    """A name no database can hold: a NUL (C strings end there) or text without a UTF-8 form."""
    if "\x00" in name:
        raise ConfigError(
            f"{what} {name!r}, which contains a NUL character; no database can name a {kind} so, remove it."
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{what} {name!r}, which is not valid Unicode (a lone surrogate); give a {kind} name that is."
        ) from None


def _mapping(
    given: Mapping[str, str | None] | None, default: Mapping[str, str], what: str
) -> Mapping[str, str | None]:
    merged: dict[str, str | None] = dict(default)
    for key, value in (given or {}).items():
        if key not in default:
            raise ConfigError(
                f"{what} has no logical column {key!r}; known ones are {', '.join(default)}."
            )
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(
                f"{what} maps {key!r} to {value!r}; give a column name or None (no such column)."
            )
        if value is not None:
            _check_storable(value, f"{what} maps {key!r} to", "column")
        merged[key] = value
    for required in ("siret", "date") + (("cycle",) if what == "pv_columns" else ()):
        if merged[required] is None:
            raise ConfigError(f"{what} must name a column for {required!r}; it cannot be None.")
    return MappingProxyType(merged)


@dataclass(frozen=True, init=False)
class Config:
    """What to compute and where: cycles, source tables and their columns, target.

    Parameters
    ----------
    cycles
        ``(label, first day, last day)`` triples or :class:`Cycle` objects, in
        the order their columns appear. The last one drives ``cgt_implantee``.
    pv_table, invitations_table
        Source table names (schema-qualified allowed, e.g. ``"public.Tous_PV"``).
    pv_columns, invitation_columns
        Overrides of the logical → physical column mapping. A logical column
        mapped to ``None`` is treated as absent (all NULL).
    target_table
        Table written by :func:`siret_summary.run` (schema-qualified allowed).
    shrink_ratio
        ``run`` refuses to replace a non-empty summary by one with fewer than
        ``shrink_ratio`` × its rows, unless ``force=True``.
    status_table, history
        Table of run records (in the target database; beside the file for
        SQLite) and how many runs it keeps.
    retries
        How many times a transient database error is retried.
    connect_timeout
        Seconds a PostgreSQL connection may take to be established (libpq's
        ``connect_timeout``, whole seconds, at least 2) before the run,
        ``status()`` or ``compute()`` fails instead of waiting on a server that
        never answers; a ``connect_timeout`` in the URI wins. Default 10.
    lock_timeout
        Seconds the write waits for a lock another session holds (an idle
        transaction that touched the target, a migration) before it fails with
        :class:`~siret_summary.errors.LockWaitError` naming that session; the
        wait for the target's table lock looks at the cancel flag every second.
        Default 30.

    Examples
    --------
    >>> from siret_summary import Config
    >>> cfg = Config(cycles=[("C3", "2017-01-01", "2020-12-31"),
    ...                      ("C4", "2021-01-01", "2024-12-31"),
    ...                      ("C5", "2025-01-01", "2028-12-31")])
    >>> [c.suffix for c in cfg.cycles]
    ['c3', 'c4', 'c5']
    """

    cycles: tuple[Cycle, ...]
    pv_table: str
    invitations_table: str
    pv_columns: Mapping[str, str | None]
    invitation_columns: Mapping[str, str | None]
    target_table: str
    state_table: str
    shrink_ratio: float
    status_table: str
    history: int
    retries: int
    connect_timeout: float
    lock_timeout: float

    # Written out (init=False) so that a caller's type checker accepts what the
    # constructor accepts (triples, any iterable, dicts, None) while the fields
    # keep their normalised types; the order is the fields' (positional calls).
    def __init__(
        self,
        cycles: Iterable[CycleSpec] = DEFAULT_CYCLES,
        pv_table: str = "Tous_PV",
        invitations_table: str = "invitations",
        pv_columns: Mapping[str, str | None] | None = None,
        invitation_columns: Mapping[str, str | None] | None = None,
        target_table: str = "siret_summary",
        state_table: str = "siret_summary_state",
        shrink_ratio: float = 0.5,
        status_table: str = "siret_summary_runs",
        history: int = 20,
        retries: int = 3,
        connect_timeout: float = _DEFAULT_SECONDS["connect_timeout"],
        lock_timeout: float = _DEFAULT_SECONDS["lock_timeout"],
    ) -> None:
        given: dict[str, object] = {
            "cycles": cycles, "pv_table": pv_table, "invitations_table": invitations_table,
            "pv_columns": pv_columns or {}, "invitation_columns": invitation_columns or {},
            "target_table": target_table, "state_table": state_table, "shrink_ratio": shrink_ratio,
            "status_table": status_table, "history": history, "retries": retries,
            "connect_timeout": connect_timeout, "lock_timeout": lock_timeout,
        }
        for name, value in given.items():
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        """Validates and normalises the fields set by ``__init__`` (ConfigError naming the setting)."""
        cycles: object = self.cycles
        if isinstance(cycles, (str, bytes)) or not isinstance(cycles, Iterable):
            raise ConfigError("cycles must be a list of (label, first day, last day) triples.")
        parsed = tuple(_as_cycle(c) for c in cycles)
        if not parsed:
            raise ConfigError(
                "cycles is empty; configure at least one cycle such as ('C4', '2021-01-01', '2024-12-31').",
                problem="cycles is empty", setting="cycles",
            )
        labels = [c.label for c in parsed]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"cycle labels {labels} repeat a label; give each cycle its own label.")
        object.__setattr__(self, "cycles", parsed)
        object.__setattr__(
            self, "pv_columns", _mapping(self.pv_columns, DEFAULT_PV_COLUMNS, "pv_columns")
        )
        object.__setattr__(
            self,
            "invitation_columns",
            _mapping(self.invitation_columns, DEFAULT_INVITATION_COLUMNS, "invitation_columns"),
        )
        for name in ("history", "retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "history" else 0):
                raise ConfigError(f"{name} is {value!r}; give a whole number (history ≥ 1, retries ≥ 0).")
        for name in ("pv_table", "invitations_table", "target_table", "state_table", "status_table"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} is {value!r}; give a table name such as 'siret_summary'.")
            _check_storable(value, f"{name} is", "table")
            if "." in value and (value.count(".") > 1 or not all(value.split("."))):
                problem = f"{name} is {value!r}, which is not 'table' or 'schema.table'"
                raise ConfigError(f"{problem}; names with more dots or an empty part are not supported, write it like "
                                  "'public.siret_summary'.", problem=problem, setting=name)
        for name in ("connect_timeout", "lock_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 86_400:
                raise ConfigError(f"{name} is {value!r}; give a number of seconds above 0 (default "
                                  f"{_DEFAULT_SECONDS[name]:g}).", problem=f"{name} is {value!r}",
                                  setting=name)
        if not isinstance(self.shrink_ratio, (int, float)) or not 0 <= self.shrink_ratio <= 1:
            raise ConfigError(
                f"shrink_ratio is {self.shrink_ratio!r}; give a number between 0 and 1 (0 disables the guard)."
            )

    def hash(self) -> str:
        """Hash of everything that changes computed rows (not the target name)."""
        payload = {
            "rules": RULES_VERSION,
            "cycles": [(c.label, c.first.isoformat(), c.last.isoformat()) for c in self.cycles],
            "pv_table": self.pv_table,
            "invitations_table": self.invitations_table,
            "pv_columns": dict(self.pv_columns),
            "invitation_columns": dict(self.invitation_columns),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def needed_columns(mapping: Mapping[str, str | None]) -> list[str]:
    """The raw columns a mapping reads, in mapping order, each once."""
    return list(dict.fromkeys(v for v in mapping.values() if v is not None))


def as_config(config: Config | None) -> Config:
    """``config``, or the default Config for None; ConfigError for anything else."""
    if config is None:
        return Config()
    if not isinstance(config, Config):
        raise ConfigError(f"config is a {type(config).__name__}; pass a siret_summary.Config.")
    return config
