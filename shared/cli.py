"""`liangxin`: run the stack, migrate, create users and partner keys, relay events."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib.util
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.settings import Settings, get_settings, to_libpq_url

if TYPE_CHECKING:
    from shared.devstack import EmbeddedPostgres, EmbeddedRedis

log = logging.getLogger("liangxin.cli")

STACK_FILE = "stack.env"
SECRETS_FILE = "dev-secrets.env"
BOOTSTRAP_FILE = "bootstrap-admin.txt"
SERVICES = ("registry", "coverage", "evaluation")


def out(line: str = "") -> None:
    """What the CLI tells its user (stdout, unbuffered); logs go to stderr."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# ---- migrations -----------------------------------------------------------------------


def alembic_config(database_url: str) -> Any:
    from alembic.config import Config

    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", to_libpq_url(database_url).replace("%", "%%"))
    return cfg


def migrate(database_url: str, revision: str = "head", *, downgrade: bool = False) -> None:
    from alembic import command

    cfg = alembic_config(database_url)
    if downgrade:
        command.downgrade(cfg, revision)
    else:
        command.upgrade(cfg, revision)


# ---- settings for commands run beside `liangxin dev` ---------------------------------


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    return values


def _write_env_file(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)


def settings_with_stack() -> Settings:
    """Settings, falling back to the URLs and secrets of a running `liangxin dev`."""
    settings = get_settings()
    stack = {
        **_read_env_file(settings.data_dir / SECRETS_FILE),
        **_read_env_file(settings.data_dir / STACK_FILE),
    }
    missing = {k: v for k, v in stack.items() if k not in os.environ}
    if missing:
        os.environ.update(missing)
        get_settings.cache_clear()
        settings = get_settings()
    if not settings.database_url:
        raise SystemExit("LIANGXIN_DATABASE_URL is not set and no `liangxin dev` stack is running here")
    return settings


async def _with_session(settings: Settings, work: Any) -> Any:
    from shared.db import Database
    from shared.outbox import SERVICE_KEY

    db = Database(settings, application_name="liangxin-cli", pool_size=2)
    try:
        async with db.session() as session:
            session.info[SERVICE_KEY] = "registry"
            return await work(session)
    finally:
        await db.dispose()


# ---- users and keys -------------------------------------------------------------------


def cmd_user_create(args: argparse.Namespace) -> int:
    from shared.auth import create_user
    from shared.errors import ProblemError
    from shared.models import Role

    settings = settings_with_stack()
    password = args.password or os.environ.get("LIANGXIN_NEW_USER_PASSWORD")
    generated = False
    if not password:
        if sys.stdin.isatty():
            password = getpass.getpass("Password for the new user: ")
        else:
            password, generated = secrets.token_urlsafe(12), True

    async def work(session: Any) -> Any:
        return await create_user(
            session,
            username=args.username,
            password=password,
            role=Role(args.role),
            region_code=args.region,
            display_name=args.display_name or "",
        )

    try:
        user = asyncio.run(_with_session(settings, work))
    except ProblemError as exc:
        out(f"error: {exc.detail}")
        return 2
    out(f"created user {user.username} (role {user.role}, region {user.region_code})")
    if generated:
        out(f"password (shown once): {password}")
    return 0


def cmd_api_key_create(args: argparse.Namespace) -> int:
    from shared.auth import create_api_key
    from shared.errors import ProblemError

    settings = settings_with_stack()
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]

    async def work(session: Any) -> Any:
        return await create_api_key(
            session, name=args.name, scopes=scopes, region_code=args.region, pepper=settings.api_key_pepper
        )

    try:
        row, key = asyncio.run(_with_session(settings, work))
    except ProblemError as exc:
        out(f"error: {exc.detail}")
        return 2
    out(
        f"created API key {row.name!r} (scopes {', '.join(row.scopes)}, region {row.region_code}); "
        "keep it now, it is not stored:"
    )
    out(key)
    return 0


async def ensure_bootstrap_admin(settings: Settings) -> str | None:
    """Create the first admin at the national root if there is no admin; returns a new password."""
    from sqlalchemy import select
    from sqlmodel import col

    from shared.auth import create_user
    from shared.models import ROOT_REGION, Role, StaffUser

    async def work(session: Any) -> str | None:
        found = await session.execute(select(col(StaffUser.id)).where(col(StaffUser.role) == Role.admin).limit(1))
        if found.first() is not None:
            return None
        password = settings.bootstrap_admin_password or secrets.token_urlsafe(12)
        await create_user(
            session,
            username=settings.bootstrap_admin_username,
            password=password,
            role=Role.admin,
            region_code=ROOT_REGION,
            display_name="Bootstrap administrator",
        )
        return None if settings.bootstrap_admin_password else password

    result: str | None = await _with_session(settings, work)
    return result


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_with_stack()
    assert settings.database_url
    migrate(settings.database_url, args.revision, downgrade=args.downgrade)
    out(f"database at {'revision ' + args.revision if args.downgrade else 'the latest revision'}")
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    from shared.db import Database
    from shared.logging import configure_logging, service_var
    from shared.queue import make_redis
    from shared.relay import run_relay

    settings = settings_with_stack()
    configure_logging(settings.log_level, json_output=settings.log_json)
    service_var.set("relay")
    if not settings.redis_url:
        raise SystemExit("LIANGXIN_REDIS_URL is not set")

    async def main() -> None:
        db = Database(settings, application_name="liangxin-relay", pool_size=2)
        redis = make_redis(settings.redis_url)  # type: ignore[arg-type]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_relay(db, redis, settings, stop=stop)
        finally:
            await redis.aclose()
            await db.dispose()

    asyncio.run(main())
    return 0


# ---- the whole stack on one machine ---------------------------------------------------


RESTART_MAX_DELAY_S = 30.0


def restart_delay(restarts: int) -> float:
    """Seconds before a process that died is started again: at once the first time (most crashes
    are one-offs), then 1, 2, 4 … up to 30 s for one that keeps dying soon after each start."""
    return 0.0 if restarts == 0 else min(2.0 ** (restarts - 1), RESTART_MAX_DELAY_S)


@dataclass
class Supervised:
    """Something `liangxin dev` keeps running: started again, with a growing delay, when it dies."""

    name: str
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    down: bool = False

    def alive(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def exit_code(self) -> int | None:
        return None

    def supervise(self, now: float) -> None:
        """One look: note a death, and start it again once its delay is over."""
        if not self.down:
            if self.alive():
                return
            self.down = True
            self.restarts = 0 if now - self.started_at > 60 else self.restarts + 1
            self.next_start = now + restart_delay(self.restarts)
            log.warning(
                "process exited; restarting",
                extra={"child": self.name, "code": self.exit_code(), "in_s": round(self.next_start - now, 1)},
            )
        if now < self.next_start:
            return
        try:
            self.start()
        except Exception:
            # Try again later, waiting longer each time; the caller logs what went wrong.
            self.restarts += 1
            self.next_start = now + max(restart_delay(self.restarts), 1.0)
            raise
        self.started_at, self.down = time.monotonic(), False


@dataclass
class Child(Supervised):
    argv: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        # A session of its own: Ctrl-C reaches only the supervisor, which stops children in order.
        self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True)  # noqa: S603
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def stop(self, timeout: float = 10) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedServer(Supervised):
    """The embedded Postgres or Redis, started again in place (same port, same data) when it dies."""

    server: EmbeddedPostgres | EmbeddedRedis | None = None

    def alive(self) -> bool:
        return self.server is not None and self.server.alive()

    def start(self) -> None:
        assert self.server is not None
        self.server.start()


def _apis_answer(host: str, ports: list[int]) -> bool:
    import httpx

    target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - where to connect, not bind
    try:
        return all(httpx.get(f"http://{target}:{port}/healthz", timeout=1).status_code == 200 for port in ports)
    except httpx.HTTPError:
        return False


def keep_bootstrap_password(data_dir: Path, username: str, password: str) -> Path:
    """The new admin's password in a file only its owner can read, so it survives the scrollback."""
    path = data_dir / BOOTSTRAP_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out_file:
        out_file.write(f"username={username}\npassword={password}\n")
    path.chmod(0o600)  # also when the file was there before with wider permissions
    return path


def _dev_secrets(settings: Settings) -> dict[str, str]:
    """Random secrets kept under the data folder, shared by every process of the stack."""
    path = settings.data_dir / SECRETS_FILE
    values = _read_env_file(path)
    for name in ("LIANGXIN_JWT_SECRET", "LIANGXIN_API_KEY_PEPPER", "LIANGXIN_PII_HASH_KEY"):
        values.setdefault(name, secrets.token_urlsafe(32))
    _write_env_file(path, values)
    return {k: v for k, v in values.items() if k not in os.environ}


def cmd_dev(args: argparse.Namespace) -> int:
    from shared.devstack import EmbeddedPostgres, EmbeddedRedis
    from shared.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json_output=settings.log_json)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **_dev_secrets(settings), "LIANGXIN_DATA_DIR": str(data_dir)}
    pg = redis = None
    stopping = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    children: list[Child] = []
    try:
        if settings.database_url:
            database_url = settings.database_url
        else:
            out(f"starting embedded Postgres (data in {data_dir / 'pg'}) ...")
            pg = EmbeddedPostgres(data_dir, settings.embedded_pg_port)
            pg.start()
            database_url = pg.url
        if settings.redis_url:
            redis_url = settings.redis_url
        else:
            out(f"starting embedded Redis (data in {data_dir / 'redis'}) ...")
            redis = EmbeddedRedis(data_dir, settings.embedded_redis_port)
            redis.start()
            redis_url = redis.url
        env.update(LIANGXIN_DATABASE_URL=database_url, LIANGXIN_REDIS_URL=redis_url)
        _write_env_file(data_dir / STACK_FILE, {"LIANGXIN_DATABASE_URL": database_url, "LIANGXIN_REDIS_URL": redis_url})
        os.environ.update(env)
        get_settings.cache_clear()
        settings = get_settings()

        out("applying migrations ...")
        migrate(database_url)
        password = asyncio.run(ensure_bootstrap_admin(settings))
        if args.demo:
            if importlib.util.find_spec("services.registry.demo") is None:
                out("no demo data in this version yet; starting without it")
            else:
                out("loading demo data (once) ...")
                subprocess.run([sys.executable, "-m", "services.registry.demo", "--if-empty"], env=env, check=True)

        python = sys.executable
        ports = {
            "registry": settings.registry_port,
            "coverage": settings.coverage_port,
            "evaluation": settings.evaluation_port,
        }
        for svc in SERVICES:
            children.append(
                Child(
                    f"{svc}-api",
                    argv=[
                        python,
                        "-m",
                        "uvicorn",
                        f"services.{svc}.main:app",
                        "--host",
                        args.host,
                        "--port",
                        str(ports[svc]),
                        "--no-access-log",
                        "--log-level",
                        "warning",
                    ],
                    env=env,
                )
            )
            worker = [python, "-m", "arq", f"services.{svc}.jobs.WorkerSettings"]
            children.append(Child(f"{svc}-worker", argv=worker, env=env))
        children.append(Child("relay", argv=[python, "-m", "shared.cli", "relay"], env=env))
        for child in children:
            child.start()
        supervised: list[Supervised] = []
        if redis is not None:
            supervised.append(EmbeddedServer("embedded-redis", server=redis))
        if pg is not None:
            supervised.append(EmbeddedServer("embedded-postgres", server=pg))
        supervised.extend(children)
        for unit in supervised:
            unit.started_at = time.monotonic()
        kept = keep_bootstrap_password(data_dir, settings.bootstrap_admin_username, password) if password else None

        def announce() -> None:
            # Once the APIs answer (or after a minute and a half), so what follows is short and the
            # password comes last, below every line of start-up.
            out("")
            out("Liangxin is running:")
            for svc in SERVICES:
                out(f"  {svc:<10} http://{args.host}:{ports[svc]}  (docs: /docs, ready: /readyz)")
            out(f"  database   {database_url}")
            out(f"  redis      {redis_url}")
            out("Press Ctrl-C to stop.")
            if password:
                out(f"  admin      user {settings.bootstrap_admin_username!r}, password (shown once): {password}")
                out(f"             also kept in {kept} (readable by you alone); delete it once noted")

        announce_by = time.monotonic() + 90
        announced = False
        while not stopping:
            time.sleep(0.5)
            if not announced and (time.monotonic() > announce_by or _apis_answer(args.host, list(ports.values()))):
                announce()
                announced = True
            for unit in supervised:
                if stopping:
                    break
                try:
                    unit.supervise(time.monotonic())
                except Exception:
                    # Whatever goes wrong bringing one process back, the others keep serving.
                    log.exception("could not restart a process; trying again", extra={"child": unit.name})
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        out("stopping ...")
        for child in children:
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        for child in children:
            child.stop()
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        (data_dir / STACK_FILE).unlink(missing_ok=True)
        out("stopped.")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    settings = settings_with_stack()
    argv = [sys.executable, "-m", "services.registry.demo", "--seed", str(args.seed)]
    env = {**os.environ, "LIANGXIN_DATABASE_URL": settings.database_url or ""}
    return subprocess.run(argv, env=env, check=False).returncode  # noqa: S603


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liangxin", description="Liangxin (两新) command line")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="start the three APIs, their workers and the relay on this machine")
    dev.add_argument("--demo", action="store_true", help="load the demo county once")
    dev.add_argument("--host", default="127.0.0.1")
    dev.set_defaults(func=cmd_dev)

    mig = sub.add_parser("migrate", help="apply the database migrations")
    mig.add_argument("--revision", default="head")
    mig.add_argument("--downgrade", action="store_true", help="downgrade to --revision instead")
    mig.set_defaults(func=cmd_migrate)

    user = sub.add_parser("user", help="staff users").add_subparsers(dest="action", required=True)
    uc = user.add_parser("create", help="create a staff user")
    uc.add_argument("--username", required=True)
    uc.add_argument("--role", required=True, choices=["admin", "officer", "surveyor", "auditor"])
    uc.add_argument("--region", required=True, help="12-digit jurisdiction region code")
    uc.add_argument("--display-name")
    uc.add_argument("--password", help="default: $LIANGXIN_NEW_USER_PASSWORD, a prompt, or generated")
    uc.set_defaults(func=cmd_user_create)

    key = sub.add_parser("api-key", help="partner API keys").add_subparsers(dest="action", required=True)
    kc = key.add_parser("create", help="create a partner API key (printed alone on the last line)")
    kc.add_argument("--name", required=True)
    kc.add_argument("--scopes", required=True, help="comma-separated, e.g. registry:read,registry:write")
    kc.add_argument("--region", required=True, help="12-digit jurisdiction region code")
    kc.set_defaults(func=cmd_api_key_create)

    relay = sub.add_parser("relay", help="relay committed events from the outboxes to the queues")
    relay.set_defaults(func=cmd_relay)

    seed = sub.add_parser("seed-demo", help="load the demo county (deterministic by seed)")
    seed.add_argument("--seed", type=int, default=2026)
    seed.set_defaults(func=cmd_seed_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
