"""siret_summary: rebuild the one-row-per-SIRET summary from election minutes and invitations.

Public face: :func:`compute`, :func:`explain`, :func:`run`, :class:`Config`, :class:`RunResult`
and the exceptions of :mod:`siret_summary.errors`; the faces
:mod:`siret_summary.fastapi` and :mod:`siret_summary.cli`. Every other module
is internal (docs/architecture.md shows the layers).
"""

from siret_summary._version import __version__ as __version__

from siret_summary.db.postgres.capture_install import install_change_capture, uninstall_change_capture
from siret_summary.pipeline.compute import compute, compute_report
from siret_summary.explain import Explanation, explain
from siret_summary.config import Config, Cycle
from siret_summary.runs.retry import RetryPolicy
from siret_summary.runs.queries import cancel, history, status
from siret_summary.runs.result import RunResult
from siret_summary.runs.runner import run
from siret_summary.live import LiveStatus, watch
from siret_summary.errors import (
    CancelledError,
    ConfigError,
    LockWaitError,
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
    "Explanation",
    "LiveStatus",
    "LockWaitError",
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
    "explain",
    "run",
    "watch",
]
