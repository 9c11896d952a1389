"""What a run returns: :class:`RunResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunResult:
    """What one run did.

    ``status``: ``completed``, ``cancelled`` or ``already_running`` (a failed run
    raises instead, after recording ``failed``). ``rows`` is the number of rows
    in the target after the run, counted (``count(*)``) in the write's transaction; ``mode`` the plan
    that ran (``full``, ``incremental`` for a scan, ``capture`` or ``targeted``);
    ``inserted``/``updated``/``deleted`` count target rows;
    ``rejected``/``warnings`` count source rows by reason; ``seconds`` holds the
    duration of each stage (``read``, ``compute``, ``write``).
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
    run_id: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None
    #: Why a fast path stepped aside this run (e.g. change capture → scan), else None.
    fallback: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def summary(self) -> dict[str, Any]:
        """The ``result`` object of the status JSON."""
        return {
            "rows": self.rows, "inserted": self.inserted, "updated": self.updated,
            "deleted": self.deleted, "rejected": self.rejected, "warnings": self.warnings,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "mode": self.mode,
            **({"fallback": self.fallback} if self.fallback else {}),
        }  # fmt: skip
