"""``siret-summary watch`` stopped in its first instant (issue 28): a SIGTERM from a service manager or a
Ctrl-C that arrives while the command line is still loading ends it with exit 0, like one that arrives later.

The command line's heavy import is made slow on purpose (a ``sitecustomize`` that sleeps before
``siret_summary.cli`` is found), so the signal lands inside it: without siret_summary/cli_entry.py,
SIGTERM killed the process (status -15) and Ctrl-C printed a KeyboardInterrupt traceback (status 1).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from watchutil import TABLE

from siret_summary.demo_data import generate, write_sqlite

pytestmark = pytest.mark.slow  # a few seconds per case

SLOW_IMPORT_SECONDS = 4.0
SLOW_SITE = f"""
import sys, time

class _SlowCommandLine:
    def find_spec(self, name, path=None, target=None):
        if name == "siret_summary.cli":
            time.sleep({SLOW_IMPORT_SECONDS})
        return None

sys.meta_path.insert(0, _SlowCommandLine())
"""


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: the SigCgt mask of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def _entry(how: str) -> list[str]:
    if how == "python -m siret_summary":
        return [sys.executable, "-m", "siret_summary"]
    return [str(Path(sys.executable).with_name("siret-summary"))]  # the installed console script


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal mask from Linux's /proc")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["python -m siret_summary", "siret-summary"])
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_command_line_loads_still_ends_watch_with_exit_0(tmp_path, how, stop):
    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=200, n_invitations=40, seed=5))
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_SITE)
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    started = time.monotonic()
    process = subprocess.Popen([*_entry(how), "watch", "--source", location, "--table", TABLE],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Wait until the process handles SIGTERM (the interpreter alone does not), but no longer than the
        # slowed import lasts: the signal then arrives while the command line is loading, whatever the code.
        while not _catches(process.pid, signal.SIGTERM) and time.monotonic() - started < SLOW_IMPORT_SECONDS / 2:
            time.sleep(0.01)
        assert process.poll() is None
        sent = time.monotonic() - started
        process.send_signal(stop)
        out, err = process.communicate(timeout=90)
        assert sent < SLOW_IMPORT_SECONDS  # the import had not ended: the signal arrived during it
        assert process.returncode == 0, (process.returncode, err)
        assert "Traceback" not in err, err
        assert out.splitlines()[-1] == "surveillance arrêtée"
        assert "signal perdu" not in out and "signal lost" not in err  # a stop while opening is not a gap
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
