"""A private PostgreSQL server the tests may stop and start at will (failure-mode tests).

Unlike the shared server, this one belongs to one test: ``stop()`` makes the
database disappear from under a running ``invario serve`` and ``start()`` brings
it back on the same port with the same data. PostgreSQL refuses to run as root,
so under root it runs as the ``postgres`` system user through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.postgres import THROWAWAY_USER, _free_port, find_pg_ctl


class ServerSetupFailed(Exception):
    """This machine cannot run a private PostgreSQL server; the message says why."""


class PrivateServer:
    """``initdb`` into a temporary directory, then ``pg_ctl start/stop`` on a free port."""

    def __init__(self) -> None:
        pg_ctl = find_pg_ctl()
        if pg_ctl is None:
            raise ServerSetupFailed("pg_ctl not found")
        self.bin = Path(pg_ctl).parent
        self.base = Path(tempfile.mkdtemp(prefix="invario-private-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            account = pwd.getpwnam(THROWAWAY_USER)
            os.chown(self.base, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", THROWAWAY_USER, "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://{THROWAWAY_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"),
                       capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise ServerSetupFailed("running as root without runuser")
            command = [runuser, "-u", THROWAWAY_USER, "--", *command]
        return command

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(self._command(program, *args), capture_output=True, text=True, cwd="/", check=False)
        if result.returncode != 0:
            raise ServerSetupFailed(f"{program} failed: {result.stderr.strip() or result.stdout.strip()}")
