"""What a stored run record says: its fields checked, and its status JSON (issue 25, SPEC §7).

Records are read with every column as text (a hand-edited SQLite side file
can hold text where a number belongs) and :func:`checked`: a record whose
``seq``, ``run_id``, ``status`` or ``started_at`` is missing or unreadable, or
whose ``completed_at``, ``progress_percent``, ``result``, ``owner_pid`` or
``cancel_requested`` cannot be read as what it should hold, is *damaged*. A
damaged record is listed as damaged (:func:`damaged_view`) and counted, never
raised and never taken as the latest run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

TASK_ID = "build_siret_summary"
DESCRIPTION = "Reconstruction de la table siret_summary"

#: The statuses a record can hold.
STATUSES = ("running", "completed", "failed", "cancelled", "interrupted")

#: The largest sane ``seq``: far below the int64 limit, so the next number never overflows
#: (a record numbered above it is damaged, never the latest, pruned first).
SEQ_MAX = 2**62


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp as an aware datetime (naive: UTC); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def checked(raw: dict[str, Any]) -> dict[str, Any]:
    """A record as read (every column as text) with its fields typed, and ``damage``: None, or
    what is wrong with it in words. A damaged record is never raised, never the latest."""
    record, problems = dict(raw), []

    def number(name: str, kind: type, *, required: bool = False) -> None:
        value = record.get(name)
        if value is None:
            if required:
                problems.append(f"{name} is NULL")
            return
        try:
            record[name] = kind(value)
            if kind is float and not math.isfinite(record[name]):
                raise ValueError
        except (TypeError, ValueError):
            record[name] = None
            problems.append(f"{name} {_shown(value)} is not a {'number' if kind is float else 'whole number'}")

    number("seq", int, required=True)
    if record.get("seq") is not None and not 1 <= record["seq"] <= SEQ_MAX:
        problems.append(f"seq {_shown(raw.get('seq'))} is outside 1..{SEQ_MAX}")
        record["seq"] = None
    number("progress_percent", float)
    number("owner_pid", int)
    number("cancel_requested", int)
    if record.get("run_id") is None:
        problems.append("run_id is NULL")
    if record.get("status") not in STATUSES:
        problems.append(f"status {_shown(record.get('status'))} is not one of {', '.join(STATUSES)}")
    for name, required in (("started_at", True), ("completed_at", False)):
        value = record.get(name)
        if value is None:
            if required:
                problems.append(f"{name} is NULL")
        elif parse_time(value) is None:
            problems.append(f"{name} {_shown(value)} is not an ISO 8601 timestamp")
    result = record.get("result")
    if result is not None:
        try:
            record["result"] = json.loads(result)
        except (TypeError, ValueError):
            record["result"] = None
            problems.append(f"result {_shown(result)} is not JSON")
    record["damage"] = "; ".join(problems) or None
    return record


def public_view(record: dict[str, Any], *, interrupted: bool = False) -> dict[str, Any]:
    """A checked (undamaged) record as the seed-compatible status JSON."""
    status = "interrupted" if interrupted else record["status"]
    result = record.get("result")
    out: dict[str, Any] = {
        "task_id": record["task_id"],
        "run_id": record["run_id"],
        "status": status,
        "description": record["description"],
        "started_at": record["started_at"],
        "completed_at": record["completed_at"],
        "progress": {"stage": record["progress_stage"], "percent": record["progress_percent"]},
        "result": json.loads(result) if isinstance(result, str) else result,
        "error": record["error"],
        "target": record["target_table"],
    }
    started = parse_time(record["started_at"])
    ended = parse_time(record["completed_at"])
    if started is not None and status == "running":
        out["elapsed_seconds"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3)
    elif started is not None and ended is not None:
        out["duration_seconds"] = round((ended - started).total_seconds(), 3)
    return out


def damaged_view(record: dict[str, Any]) -> dict[str, Any]:
    """A damaged record as status JSON: ``status`` ``damaged``, what is wrong in ``error``, no raw value trusted."""
    return {
        "task_id": TASK_ID, "run_id": record.get("run_id"), "status": "damaged", "description": DESCRIPTION,
        "started_at": None, "completed_at": None, "progress": {"stage": None, "percent": None}, "result": None,
        "error": (f"this run record is damaged ({record['damage']}); it is ignored, and pruned as runs go by "
                  "(or delete it from the status table)."),
        "target": record.get("target_table"),
    }  # fmt: skip
