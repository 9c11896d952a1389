"""Refuse to compute in a process forked after the library used polars.

polars' thread pool does not survive ``fork()``: a child forked after the
parent ran polars work waits forever on threads that only the parent has
(seen stuck in ``arrow_to_pydf``). polars documents the same: use the
``spawn`` or ``forkserver`` start method. The public entry points
(``run``, ``compute``, ``compute_report``, ``explain``) call :func:`check`
first: it marks the library as having used polars and, in a forked child
of a process that had, raises at once instead of hanging.
"""

from __future__ import annotations

import os

from siret_summary.errors import ConfigError

_used = False
_forked_after_use = False


def _after_fork_in_child() -> None:
    global _forked_after_use
    if _used:
        _forked_after_use = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def check() -> None:
    """Mark polars as used by this process, or raise in a child forked after it was.

    Raises :class:`~siret_summary.ConfigError` naming the way out (no
    setting fixes it: the host's start method does); returns None otherwise.
    """
    global _used
    if _forked_after_use:
        raise ConfigError(
            "this process was forked after siret_summary had used polars in its parent, and polars' "
            "thread pool does not survive a fork (the run would hang); start worker processes with "
            "multiprocessing's 'spawn' or 'forkserver' start method "
            "(multiprocessing.get_context('spawn')), or run gunicorn without --preload."
        )
    _used = True
