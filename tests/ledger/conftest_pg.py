"""A throwaway PostgreSQL server for the ledger's PostgreSQL tests (real ``initdb`` / ``pg_ctl``).

The server lives in a fresh temporary directory: its data directory, log and Unix socket
are all there, it listens on no TCP address, trusts every local connection and is
stopped (``pg_ctl stop -m immediate``) and deleted at the end. PostgreSQL refuses to run
as root, so as root the directory is handed to the ``postgres`` OS user and every server
command runs through ``runuser -u postgres --`` (or ``su postgres -c``); as anyone else
they run directly.

A machine without PostgreSQL skips these tests, unless ``SCALEGATE_REQUIRE_POSTGRES=1``
(set by ``.ci/run``) turns that skip into a failure, so CI can never silently skip them.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REQUIRE_ENV = "SCALEGATE_REQUIRE_POSTGRES"
_NEEDED = ("initdb", "pg_ctl", "postgres")
_PORT = 5432  # only names the socket file: the server listens on no TCP address


def _has_tools(d: Path) -> bool:
    return all(os.access(d / tool, os.X_OK) for tool in _NEEDED)


def find_bindir() -> Path | None:
    """PostgreSQL's server binaries: ``pg_config --bindir``, then PATH, then
    ``/usr/lib/postgresql/*/bin`` (newest major version first)."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _has_tools(Path(out)):
            return Path(out)
    initdb = shutil.which("initdb")
    if initdb and _has_tools(Path(initdb).resolve().parent):
        return Path(initdb).resolve().parent

    def major(d: str) -> int:
        m = re.search(r"/postgresql/(\d+)/bin$", d)
        return int(m.group(1)) if m else -1

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        if _has_tools(Path(d)):
            return Path(d)
    return None


def unavailable(reason: str) -> None:
    """Skip, or fail where PostgreSQL is required (CI)."""
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this is a failure, not a skip)",
                    pytrace=False)
    pytest.skip(reason)


class PostgresServer:
    """One running throwaway server; :meth:`new_database` gives each test its own database."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="scalegate-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _PORT
        self._names = itertools.count()
        self._started = False

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:  # the server refuses root: run as the postgres OS user
            runuser = shutil.which("runuser")
            cmd = ([runuser, "-u", "postgres", "--", *cmd] if runuser
                   else ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)])
        proc = subprocess.run(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}{log}")

    def start(self) -> None:
        """initdb (trust auth, no TCP), start, and wait until it accepts connections."""
        if self.as_root:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, and there is no 'postgres' OS user to "
                                   "run the server as (PostgreSQL refuses root)") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        # --no-sync: a throwaway cluster; the running server still fsyncs every commit.
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-locale", "--no-sync")
        opts = (f"-k {self.dir} -p {_PORT} -c listen_addresses='' -c max_connections=60 "
                "-c shared_buffers=32MB -c synchronous_commit=on -c fsync=on")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", opts, "start")
        self._started = True

    def stop(self) -> None:
        """Stop the server (immediately: it is thrown away) and delete its directory."""
        try:
            if self._started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` over the server's Unix socket."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.dir}&port={_PORT}"

    def new_database(self) -> str:
        """Create an empty database; return its URL."""
        import psycopg

        name = f"ledger_{next(self._names)}"
        with psycopg.connect(host=str(self.dir), port=_PORT, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server() -> PostgresServer:
    """A started server, or skip (fail under ``SCALEGATE_REQUIRE_POSTGRES=1``) saying why."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install 'scalegate[postgres]')")
    bindir = find_bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found via "
                    "pg_config, PATH or /usr/lib/postgresql/*/bin; install the "
                    "'postgresql' package to run these tests")
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        unavailable(f"could not start a throwaway PostgreSQL server from {bindir}: {exc}")
    return server
