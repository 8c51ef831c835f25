"""A throwaway PostgreSQL server for the tests: the machine's PostgreSQL, run as the ``postgres``
user in a temporary directory on a free port (fsync off: the data is thrown away)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``start()`` it, then ``new_database()`` gives a URL of an empty database; ``stop()`` ends it."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = ""
        self.port = 0

    @property
    def available(self) -> bool:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return self.bin is not None and shutil.which("su") is not None and os.geteuid() == 0

    def _as_postgres(self, command: str) -> None:
        subprocess.run(["su", "postgres", "-c", command], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="searchlib-pg-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")
        self.port = _free_port()
        self._as_postgres(f"{self.bin}/initdb -N -D {self.dir}/data -A trust -U postgres")
        self.resume()

    def halt(self) -> None:
        """Stop the server as a crash would (``-m immediate``), keeping its data for :meth:`resume`."""
        self._as_postgres(f"{self.bin}/pg_ctl -D {self.dir}/data -m immediate stop")

    def resume(self) -> None:
        """Start the halted server again on the same port, with the same data."""
        self._as_postgres(f"{self.bin}/pg_ctl -D {self.dir}/data -o '-p {self.port} -k {self.dir} "
                          f"-c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200' "
                          f"-l {self.dir}/log -w start")

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._as_postgres(f"{self.bin}/createdb -h 127.0.0.1 -p {self.port} {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def password_user(self, password: str) -> str:
        """A new role that must log in with ``password`` (the others keep ``trust``); its name."""
        name = f"u_{uuid.uuid4().hex[:10]}"
        self._as_postgres(f"{self.bin}/psql -h 127.0.0.1 -p {self.port} -d postgres -q -c "
                          f"\"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}'\"")
        hba = f"{self.dir}/data/pg_hba.conf"
        self._as_postgres(f"sed -i '1i host all {name} 127.0.0.1/32 scram-sha-256' {hba}")
        self._as_postgres(f"{self.bin}/pg_ctl -D {self.dir}/data reload")
        import time

        import psycopg

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the reload is signalled, not waited for
            try:
                psycopg.connect(host="127.0.0.1", port=self.port, dbname="postgres", user=name,
                                password=password + "-not").close()
            except psycopg.OperationalError:
                break
            time.sleep(0.1)
        return name

    def stop(self) -> None:
        if self.dir:
            try:
                self._as_postgres(f"{self.bin}/pg_ctl -D {self.dir}/data -m immediate stop")
            except subprocess.CalledProcessError:
                pass  # already halted by the test
            finally:
                shutil.rmtree(self.dir, ignore_errors=True)
