"""How the CLI shows the values of a run record (``status``, ``history``).

A record may be damaged (a percent written as text, a NULL timestamp, a
``result`` that is not an object): every value is shown as it is, never a
traceback (issue 25).
"""

from __future__ import annotations

from typing import Any

__all__ = ["record_mapping", "record_text"]


def record_text(value: object, spec: str = "") -> str:
    """A record's value for the terminal: numbers formatted by ``spec``, NULL as ``-``, anything else as it is."""
    if value is None:
        return "-"
    if spec and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def record_mapping(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object (a record's ``result``), else an empty one."""
    return value if isinstance(value, dict) else {}
