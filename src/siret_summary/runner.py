"""run(): read → compute → write → report, timed per stage."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from .compute import summarise
from .config import Config, as_config
from .db import Backend, open_backend
from .errors import ConfigError, TargetError
from .read import connected, read_sources
from .write import write_summary

log = logging.getLogger("siret_summary")


@dataclass
class RunResult:
    """What one run did.

    ``status`` is ``completed`` (or, from the orchestration layer,
    ``already_running``/``failed``/``cancelled``); ``rows`` is the number of rows
    written; ``rejected`` and ``warnings`` count source rows by reason;
    ``seconds`` holds the duration of each stage (``read``, ``compute``, ``write``).
    """

    status: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    mode: str = "full"
    target: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def target_backend(source: Any, target: Any) -> Backend:
    location = target if target is not None else source
    if not isinstance(location, (str, os.PathLike)):
        raise ConfigError(
            "target is missing; when the sources are in memory, pass target= a postgresql:// URI or a SQLite path."
        )
    return open_backend(location, must_exist=False)


def run(
    source: Any,
    target: Any = None,
    *,
    config: Config | None = None,
    mode: str = "full",
    force: bool = False,
) -> RunResult:
    """Rebuild the target summary table from the sources.

    ``source`` is anything :func:`siret_summary.compute` accepts; ``target`` a
    ``postgresql://`` URI or SQLite path, by default the source database. The
    target table (``config.target_table``) is created when missing and
    otherwise rewritten in place in one transaction. Raises a
    :class:`~siret_summary.SiretSummaryError` subclass on bad input; the target
    is then unchanged.

    Examples
    --------
    >>> import siret_summary, tempfile, os
    >>> from siret_summary.demo_data import generate, write_sqlite
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.db")
    >>> write_sqlite(path, *generate(n_pv=2_000, n_invitations=300, seed=1))
    >>> result = siret_summary.run(path)
    >>> result.status, result.rows > 0
    ('completed', True)
    """
    config = as_config(config)
    if mode not in ("full",):
        raise ConfigError(f"mode {mode!r} is not supported; use mode='full'.")
    backend = target_backend(source, target)
    result = RunResult(status="running", mode=mode, target=config.target_table, started_at=now_iso())
    log.info("rebuild of %s started (mode=%s)", config.target_table, mode)

    t0 = time.perf_counter()
    raw = read_sources(source, config)
    result.seconds["read"] = time.perf_counter() - t0
    log.info("read: %.3f s", result.seconds["read"])

    t0 = time.perf_counter()
    summary, report = summarise(raw, config)
    result.seconds["compute"] = time.perf_counter() - t0
    result.rejected, result.warnings = report.rejected, report.warnings
    log.info("compute: %.3f s, %d rows, rejected %s", result.seconds["compute"], summary.height, report.rejected)

    t0 = time.perf_counter()
    with connected(backend, role="target", error=TargetError) as conn:
        stats = write_summary(
            backend, conn, config.target_table, summary, force=force, shrink_ratio=config.shrink_ratio
        )
    result.seconds["write"] = time.perf_counter() - t0
    result.rows, result.inserted, result.deleted = summary.height, stats.inserted, stats.deleted
    result.status, result.completed_at = "completed", now_iso()
    log.info("write: %.3f s; completed with %d rows", result.seconds["write"], result.rows)
    return result
