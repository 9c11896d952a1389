"""Debian's ``pgbouncer`` in front of the test server, in transaction pooling mode (issue 24).

Started by the ``pooled`` fixture of test_pooler.py; ``.ci/run`` installs the
package when it is missing. Transaction pooling hands a client a server session
for one transaction only, as Supabase's and Neon's pooled URIs do.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

BINARIES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def binary() -> str | None:
    return next((b for b in BINARIES if os.path.exists(b)), shutil.which("pgbouncer"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def pgbouncer(server_uri: str, *, pool_size: int = 4) -> Iterator[str]:
    """A URI through a fresh pgbouncer (``pool_mode = transaction``) to ``server_uri``'s server;
    the URI names the database ``{db}`` to fill in with ``str.format``."""
    exe = binary()
    if exe is None:
        raise RuntimeError("pgbouncer is not installed; run `apt-get install pgbouncer` (.ci/run does)")
    parts = urlsplit(server_uri)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = parts.port or int(query.get("port", ["5432"])[0])
    user = parts.username or "postgres"
    workdir = Path(tempfile.mkdtemp(prefix="siret_summary_pgbouncer_"))
    listen = _free_port()
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {workdir / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 200\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {workdir / 'pgbouncer.log'}\n"
        f"pidfile = {workdir / 'pgbouncer.pid'}\n"
    )
    command = [exe, "-q", str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        account = next(n for n in ("embedded_postgres", "nobody") if _exists(n))
        command[1:1] = ["-u", account]
        os.chmod(workdir, 0o777)
        for f in workdir.iterdir():
            os.chmod(f, 0o666)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (workdir / "pgbouncer.log")
                    raise RuntimeError(f"pgbouncer did not start: {process.stderr.read().decode()}"
                                       f"{log.read_text() if log.exists() else ''}")
                time.sleep(0.05)
        yield f"postgresql://{user}@127.0.0.1:{listen}/{{db}}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _exists(account: str) -> bool:
    try:
        pwd.getpwnam(account)
        return True
    except KeyError:
        return False
