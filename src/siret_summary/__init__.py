"""siret_summary: rebuild the one-row-per-SIRET summary from election minutes and invitations.

Public face: :func:`compute`, :func:`run`, :class:`Config`, :class:`RunResult`
and the exceptions of :mod:`siret_summary.errors`.
"""

__version__ = "0.1.0"  # first: modules read it while the package is importing

from .capture import install_change_capture, uninstall_change_capture
from .compute import compute, compute_report
from .config import Config, Cycle
from .retry import RetryPolicy
from .runner import RunResult, cancel, history, run, status
from .errors import (
    CancelledError,
    ConfigError,
    ShrinkGuardError,
    SiretSummaryError,
    SourceError,
    TargetError,
)

__all__ = [
    "CancelledError",
    "Config",
    "ConfigError",
    "Cycle",
    "ShrinkGuardError",
    "SiretSummaryError",
    "SourceError",
    "TargetError",
    "RetryPolicy",
    "RunResult",
    "cancel",
    "history",
    "install_change_capture",
    "uninstall_change_capture",
    "status",
    "compute",
    "compute_report",
    "run",
]
