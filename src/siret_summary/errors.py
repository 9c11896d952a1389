"""The one exception hierarchy of the library.

Every message is one sentence naming what is wrong and how to fix it; the
driver's own error, when there is one, is kept as ``__cause__``.
"""

from __future__ import annotations


class SiretSummaryError(Exception):
    """Base class of every error the library raises on purpose."""


class ConfigError(SiretSummaryError, ValueError):
    """The configuration (cycles, column mapping, table names) is invalid."""


class SourceError(SiretSummaryError):
    """A source is unusable: malformed URI, unreachable database, missing table or column."""


class TargetError(SiretSummaryError):
    """The target table cannot take the rows (no ``siret`` column, a value too long, ...)."""


class ShrinkGuardError(TargetError):
    """The new summary is much smaller than the current one; pass ``force=True`` to write it anyway."""


class CancelledError(SiretSummaryError):
    """The run was cancelled before it committed; the target is unchanged."""
