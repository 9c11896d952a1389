"""siret_summary: rebuild the one-row-per-SIRET summary from election minutes and invitations.

Public face: :func:`compute`, :func:`explain`, :func:`run`, :class:`Config`, :class:`RunResult`
and the exceptions of :mod:`siret_summary.errors`; the faces
:mod:`siret_summary.fastapi` and :mod:`siret_summary.cli`. Every other module
is internal (docs/architecture.md shows the layers).

Importing the package is cheap: each public name is imported on first use
(PEP 562), so a console script can take its signals before Polars, Arrow and
the drivers load (siret_summary/cli_entry.py: issue 28's ``watch`` ends with
exit 0 on a SIGTERM that arrives while it loads; not in the interpreter's own
start, the first few tens of milliseconds).
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from siret_summary._version import __version__ as __version__

if TYPE_CHECKING:  # the names as a type checker and an IDE see them; at run time: __getattr__ below
    from siret_summary.capture_setup import install_change_capture as install_change_capture
    from siret_summary.capture_setup import uninstall_change_capture as uninstall_change_capture
    from siret_summary.config import Config as Config
    from siret_summary.config import Cycle as Cycle
    from siret_summary.errors import CancelledError as CancelledError
    from siret_summary.errors import ConfigError as ConfigError
    from siret_summary.errors import LockWaitError as LockWaitError
    from siret_summary.errors import ShrinkGuardError as ShrinkGuardError
    from siret_summary.errors import SiretSummaryError as SiretSummaryError
    from siret_summary.errors import SourceError as SourceError
    from siret_summary.errors import TargetError as TargetError
    from siret_summary.explain import Explanation as Explanation
    from siret_summary.explain import explain as explain
    from siret_summary.live import LiveStatus as LiveStatus
    from siret_summary.live import watch as watch
    from siret_summary.pipeline.compute import compute as compute
    from siret_summary.pipeline.compute import compute_report as compute_report
    from siret_summary.runs.queries import cancel as cancel
    from siret_summary.runs.queries import history as history
    from siret_summary.runs.queries import status as status
    from siret_summary.runs.result import RunResult as RunResult
    from siret_summary.runs.retry import RetryPolicy as RetryPolicy
    from siret_summary.runs.runner import run as run
    from siret_summary.siret_index_setup import install_siret_index as install_siret_index
    from siret_summary.siret_index_setup import uninstall_siret_index as uninstall_siret_index

#: Where each public name lives (imported on first use).
_HOMES: dict[str, str] = {
    "install_change_capture": "siret_summary.capture_setup",
    "uninstall_change_capture": "siret_summary.capture_setup",
    "install_siret_index": "siret_summary.siret_index_setup",
    "uninstall_siret_index": "siret_summary.siret_index_setup",
    "Config": "siret_summary.config",
    "Cycle": "siret_summary.config",
    "CancelledError": "siret_summary.errors",
    "ConfigError": "siret_summary.errors",
    "LockWaitError": "siret_summary.errors",
    "ShrinkGuardError": "siret_summary.errors",
    "SiretSummaryError": "siret_summary.errors",
    "SourceError": "siret_summary.errors",
    "TargetError": "siret_summary.errors",
    "Explanation": "siret_summary.explain",
    "explain": "siret_summary.explain",
    "LiveStatus": "siret_summary.live",
    "watch": "siret_summary.live",
    "compute": "siret_summary.pipeline.compute",
    "compute_report": "siret_summary.pipeline.compute",
    "cancel": "siret_summary.runs.queries",
    "history": "siret_summary.runs.queries",
    "status": "siret_summary.runs.queries",
    "RunResult": "siret_summary.runs.result",
    "RetryPolicy": "siret_summary.runs.retry",
    "run": "siret_summary.runs.runner",
}


def __getattr__(name: str) -> Any:
    """``siret_summary.run`` and the other public names, imported on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'siret_summary' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


class _Package(types.ModuleType):
    """The package's module type: ``siret_summary.explain`` stays the function.

    Loading the subpackage ``siret_summary.explain`` (by ``explain()`` or by
    any module importing from it) makes the import system bind the subpackage
    on its parent; eagerly imported, the function's binding came after and
    won. Lazily, the subpackage may load first: that binding is refused here,
    so the name still resolves to the function through :func:`__getattr__`
    (the subpackage stays in ``sys.modules``, where imports find it).
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name == "explain" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
    "install_siret_index",
    "uninstall_siret_index",
    "status",
    "compute",
    "compute_report",
    "explain",
    "run",
    "watch",
]
