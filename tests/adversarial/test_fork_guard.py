"""A process forked after the library used polars refuses at once instead of hanging (adversarial finding 3).

The fork happens in a separate script run with a timeout, in its own session, so
a hang fails this test (and is killed) instead of blocking the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import os, sys
    import siret_summary
    from siret_summary.demo_data import generate, write_sqlite
    import contextlib, io
    from siret_summary.cli import main

    def cli(argv):  # the CLI catches the error: raise it again from its one line
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        if code == 2 and "error:" in err.getvalue():
            raise siret_summary.ConfigError(err.getvalue())
        return code

    path = os.path.join(sys.argv[1], "small.db")
    write_sqlite(path, *generate(n_pv=500, n_invitations=80, seed=3))
    assert siret_summary.run(path, mode="full").status == "completed"
    pid = os.fork()
    if pid == 0:
        calls = {
            "run": lambda: siret_summary.run(path, mode="full"),
            "compute": lambda: siret_summary.compute(path),
            "compute_report": lambda: siret_summary.compute_report(path),
            "explain": lambda: siret_summary.explain(path, "47976684200724"),
            "cli export": lambda: cli(["export", "--source", path, "-o", path + ".parquet", "--no-progress"]),
            "cli rejects": lambda: cli(["rejects", "--source", path, "--no-progress"]),
        }
        for name, call in calls.items():
            try:
                call()
            except siret_summary.ConfigError as exc:
                text = str(exc)
                if not ("'spawn'" in text and "'forkserver'" in text and "--preload" in text):
                    print(name, "refused without naming the way out:", text, flush=True)
                    os._exit(4)
            else:
                print(name, "was not refused in the forked child", flush=True)
                os._exit(3)
        print("all refused", flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    # The parent, not forked, still runs.
    assert siret_summary.run(path, mode="full").status == "completed"
    sys.exit(os.waitstatus_to_exitcode(status))
""")


def test_a_child_forked_after_a_run_refuses_every_entry_point_at_once(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and its hung child
        out, _ = proc.communicate()
        raise AssertionError(f"the forked child hung (killed after 90 s):\n{out}") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out
    assert "all refused" in out


def test_a_process_that_never_used_the_library_before_forking_computes(tmp_path):
    script = textwrap.dedent("""
        import os, sys
        import polars as pl
        import siret_summary
        pid = os.fork()
        if pid == 0:
            try:
                siret_summary.compute({"Tous_PV": pl.DataFrame({"siret": ["x"]})})
            except siret_summary.ConfigError as exc:
                print("refused:", exc, flush=True)
                os._exit(5)
            except siret_summary.SiretSummaryError:
                pass  # the source is incomplete: any other refusal is not the fork guard's
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
