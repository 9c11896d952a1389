"""A rebuild in a process of its own, for tests/runs/test_orchestration.py.

As a script::

    python orchestration_worker.py run TARGET [--pause STAGE[@PERCENT]] [--pause-seconds S]
                                              [--stage-seconds S] [--history N]
    python orchestration_worker.py cancel TARGET

``run`` rebuilds TARGET (source and target are the same database) and prints
its RunResult as one JSON line; ``--pause`` makes its ``on_status`` callback
sleep ``--pause-seconds`` the first time the run reaches STAGE at PERCENT or
more (so a test can kill it there), ``--stage-seconds`` sleeps that long at
every new stage (so a test can watch the stages go by). ``cancel`` calls
``siret_summary.cancel(TARGET)`` and prints its answer as JSON.

As a module, the targets of ``multiprocessing`` children (forked by a
forkserver that has already imported the library): :func:`race` for
the start-barrier tests, :func:`main` and :func:`ask_cancel`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import siret_summary


def pausing_callback(
    pause_stage: str | None = None, *, min_percent: float = 0.0, pause_seconds: float = 0.0,
    stage_seconds: float = 0.0,
) -> Callable[[dict[str, Any]], None]:
    """An ``on_status`` callback that sleeps at one stage and/or at each new stage."""
    paused = False
    stages_seen: set[str] = set()

    def on_status(status: dict[str, Any]) -> None:
        nonlocal paused
        if status["status"] != "running":
            return
        stage, percent = status["progress"]["stage"], status["progress"]["percent"]
        if stage_seconds and stage not in stages_seen:
            stages_seen.add(stage)
            time.sleep(stage_seconds)
        if not paused and stage == pause_stage and percent >= min_percent:
            paused = True
            time.sleep(pause_seconds)

    return on_status


def race(target: str, barrier: Any, results: Any, slow_seconds: float) -> None:
    """Wait for every racer, then run; whoever wins sleeps ``slow_seconds`` at the read stage."""
    try:
        barrier.wait(timeout=60)
        result = siret_summary.run(target, on_status=pausing_callback("read", pause_seconds=slow_seconds))
        results.put(result.as_dict())
    except BaseException as exc:  # reported to the test rather than lost in the child
        results.put({"status": "error", "error": f"{type(exc).__name__}: {exc}"})


def ask_cancel(target: str, results: Any) -> None:
    """``siret_summary.cancel(target)`` from this process; its answer goes to ``results``."""
    results.put(siret_summary.cancel(target))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestration_worker")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run")
    run_p.add_argument("target")
    run_p.add_argument("--pause", default=None, help="STAGE or STAGE@PERCENT")
    run_p.add_argument("--pause-seconds", type=float, default=60.0)
    run_p.add_argument("--stage-seconds", type=float, default=0.0)
    run_p.add_argument("--history", type=int, default=20)
    cancel_p = sub.add_parser("cancel")
    cancel_p.add_argument("target")
    args = parser.parse_args(argv)

    if args.command == "cancel":
        print(json.dumps({"cancelled": siret_summary.cancel(args.target)}), flush=True)
        return 0
    stage, _, percent = (args.pause or "").partition("@")
    on_status = pausing_callback(
        stage or None, min_percent=float(percent or 0), pause_seconds=args.pause_seconds,
        stage_seconds=args.stage_seconds,
    )
    result = siret_summary.run(args.target, config=siret_summary.Config(history=args.history), on_status=on_status)
    print(json.dumps(result.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
