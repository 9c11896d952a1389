"""The one exception hierarchy of the library.

Every message is one sentence naming what is wrong and how to fix it; the
driver's own error, when there is one, is kept as ``__cause__``.

The fix is worded for Python (``Config(pv_columns={...})``, ``force=True``).
An error whose fix is a setting also carries it as facts: ``problem`` (the
message without its Python hint), ``setting`` (the :class:`~siret_summary.Config`
field or ``run()`` argument that fixes it) and ``key`` (e.g. the logical
column), so another face (the CLI) words the same fix its own way.
"""

from __future__ import annotations


class SiretSummaryError(Exception):
    """Base class of every error the library raises on purpose.

    ``str(exc)`` is the full Python-worded sentence; ``problem``, ``setting``
    and ``key`` are ``None`` unless the fix is a setting (see the module doc).
    ``stage`` names the part of :func:`siret_summary.run` it came from
    (``lock``, ``record``, ``plan``, ``read``, ``compute``, ``write``), None
    outside a run.
    """

    def __init__(self, message: str, *, problem: str | None = None, setting: str | None = None,
                 key: str | None = None, stage: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem
        self.setting = setting
        self.key = key
        self.stage = stage


class ConfigError(SiretSummaryError, ValueError):
    """The configuration (cycles, column mapping, table names) is invalid."""


class SourceError(SiretSummaryError):
    """A source is unusable: malformed URI, unreachable database, missing table or column."""


class TargetError(SiretSummaryError):
    """The target table cannot take the rows (no ``siret`` column, a value too long, ...)."""


class ShrinkGuardError(TargetError):
    """The new summary is much smaller than the current one; pass ``force=True`` to write it anyway."""


class LockWaitError(TargetError):
    """The write waited ``Config.lock_timeout`` seconds for a lock another session holds; ``blockers``
    lists those sessions (process id, application, state, since when), as PostgreSQL reports them."""

    retryable = False  # the other session's transaction decides; a retry would wait the same bound again

    def __init__(self, message: str, *, blockers: list[dict[str, object]] | None = None,
                 **facts: str | None) -> None:
        super().__init__(message, **facts)
        self.blockers: list[dict[str, object]] = blockers or []


class CancelledError(SiretSummaryError):
    """The run was cancelled before it committed; the target is unchanged."""
