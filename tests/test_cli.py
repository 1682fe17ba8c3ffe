"""The `liangxin` command line, run as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from shared.devstack import free_port

LIANGXIN = [sys.executable, "-m", "shared.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LIANGXIN, *args], capture_output=True, text=True, env=env or dict(os.environ), timeout=120, check=False
    )


async def test_user_and_api_key_creation(registry, admin) -> None:
    from tests.helpers import LIXIAN, import_tree

    await import_tree(registry, admin)
    made = run(
        "user", "create", "--username", "chen", "--role", "officer", "--region", LIXIAN, "--password", "a-long-password"
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"created user chen (role officer, region {LIXIAN})"
    login = await registry.post("/v1/auth/token", data={"username": "chen", "password": "a-long-password"})
    assert login.status_code == 200

    dup = run(
        "user", "create", "--username", "chen", "--role", "officer", "--region", LIXIAN, "--password", "a-long-password"
    )
    assert dup.returncode == 2 and "already exists" in dup.stdout

    key = run(
        "api-key", "create", "--name", "市场监管局", "--scopes", "registry:read,registry:write", "--region", LIXIAN
    )
    assert key.returncode == 0, key.stderr
    last = key.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"lx_[0-9a-f]{12}_[A-Za-z0-9-]{43}", last)
    me = await registry.get("/v1/auth/me", headers={"X-API-Key": last})
    assert me.json()["scopes"] == ["registry:read", "registry:write"]

    staff_only = run("api-key", "create", "--name", "x", "--scopes", "audit:read", "--region", LIXIAN)
    assert staff_only.returncode == 2 and "audit:read" in staff_only.stdout


def _stack_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline:
            found.append(proc)
    return found


def _wait_ready(ports: list[int], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ports)
    while pending and time.monotonic() < deadline:
        for port in list(pending):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    pending.discard(port)
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    assert not pending, f"not ready: {sorted(pending)}"


def _dev_env(data_dir: Path) -> tuple[dict[str, str], dict[str, int]]:
    """A clean environment for `liangxin dev` on free ports (embedded Postgres and Redis), and the API ports."""
    ports = {svc: free_port() for svc in ("registry", "coverage", "evaluation")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIANGXIN_")}
    env.update(
        LIANGXIN_DATA_DIR=str(data_dir),
        **{f"LIANGXIN_{svc.upper()}_PORT": str(port) for svc, port in ports.items()},
        LIANGXIN_EMBEDDED_PG_PORT=str(free_port()),
        LIANGXIN_EMBEDDED_REDIS_PORT=str(free_port()),
        LIANGXIN_LOG_LEVEL="WARNING",
    )
    return env, ports


def _start_dev(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*LIANGXIN, "dev"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_dev_starts_the_embedded_stack_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env, by_service = _dev_env(data_dir)
    ports = list(by_service.values())
    log = tmp_path / "dev.log"
    dev = _start_dev(env, log)
    try:
        _wait_ready(ports)
        output = _wait_for_line(log, "(shown once)")
        password = re.search(r"password \(shown once\): (\S+)", output)
        assert password, output
        token = httpx.post(
            f"http://127.0.0.1:{ports[0]}/v1/auth/token", data={"username": "admin", "password": password.group(1)}
        ).json()["access_token"]
        me = httpx.get(f"http://127.0.0.1:{ports[2]}/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["role"] == "admin" and me.json()["region_code"] == "000000000000"
        # Commands beside a running stack find its database without being told.
        made = run(
            "user",
            "create",
            "--username",
            "keeper",
            "--role",
            "auditor",
            "--region",
            "000000000000",
            "--password",
            "kept-across-restarts",
            env=env,
        )
        assert made.returncode == 0, made.stdout + made.stderr
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(60)
    assert dev.returncode == 0
    assert "stopped." in log.read_text()
    assert _stack_processes(data_dir) == []  # no orphaned postgres, redis, API or worker

    dev = _start_dev(env, log)
    try:
        _wait_ready(ports)
        assert "shown once" not in _wait_for_line(log, "Press Ctrl-C to stop.")
        login = httpx.post(
            f"http://127.0.0.1:{ports[0]}/v1/auth/token",
            data={"username": "keeper", "password": "kept-across-restarts"},
        )
        assert login.status_code == 200
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
    assert _stack_processes(data_dir) == []


def _roles(dev: subprocess.Popen[str], data_dir: Path) -> dict[str, int]:
    """The pid of each process `liangxin dev` keeps running, by role."""
    found: dict[str, int] = {}
    for proc in psutil.Process(dev.pid).children():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if api := re.search(r"services\.(\w+)\.main:app", cmdline):
            found[f"{api[1]}-api"] = proc.pid
        elif worker := re.search(r"services\.(\w+)\.jobs\.WorkerSettings", cmdline):
            found[f"{worker[1]}-worker"] = proc.pid
        elif cmdline.endswith("shared.cli relay"):
            found["relay"] = proc.pid
        elif "redis-server" in cmdline:
            found["embedded-redis"] = proc.pid
    pidfile = data_dir / "pg" / "postmaster.pid"
    if pidfile.exists() and (pid := int(pidfile.read_text().split()[0])) and psutil.pid_exists(pid):
        found["embedded-postgres"] = pid
    return found


def _answers(port: int, path: str = "/healthz") -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


PRINTED_LAST = ("Liangxin is running:", "Press Ctrl-C to stop.", "(shown once)", "also kept in")


def _wait_for_line(log: Path, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in (output := log.read_text()):
            return output
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never printed:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_dev_brings_back_any_child_that_dies_while_the_rest_keeps_serving(tmp_path: Path) -> None:
    """SIGKILL each kind of process of a running `liangxin dev`: the APIs not killed answer throughout,
    and the killed one comes back under a new pid and answers again."""
    data_dir = tmp_path / "data"
    env, ports = _dev_env(data_dir)
    log = tmp_path / "dev.log"
    dev = _start_dev(env, log)
    try:
        _wait_ready(list(ports.values()))
        output = _wait_for_line(log, "(shown once)")
        # The password comes after everything the command prints, and is kept in a file only its owner reads.
        lines = output.splitlines()
        at = {key: next(i for i, line in enumerate(lines) if key in line) for key in PRINTED_LAST}
        assert [at[key] for key in PRINTED_LAST] == sorted(at.values()), lines
        kept = data_dir / "bootstrap-admin.txt"
        assert str(kept) in lines[at["also kept in"]] and kept.stat().st_mode & 0o777 == 0o600
        password = dict(line.split("=", 1) for line in kept.read_text().splitlines())["password"]
        assert lines[at["(shown once)"]].endswith(f"(shown once): {password}")

        victims = ["coverage-worker", "registry-api", "relay", "embedded-redis", "embedded-postgres"]
        everyone = {*(f"{svc}-{kind}" for svc in ports for kind in ("api", "worker")), "relay", *victims}
        for victim in victims:
            # Workers lose Redis with it and are restarted too: start each round from a whole stack.
            deadline = time.monotonic() + 90
            while set(before := _roles(dev, data_dir)) != everyone:
                assert time.monotonic() < deadline, before
                time.sleep(0.3)
            os.kill(before[victim], signal.SIGKILL)
            others = [port for svc, port in ports.items() if f"{svc}-api" != victim]
            unanswered: list[int] = []
            deadline = time.monotonic() + 90
            while True:
                unanswered += [port for port in others if not _answers(port)]
                now = _roles(dev, data_dir)
                if victim in now and now[victim] != before[victim]:
                    if victim.endswith("-api"):
                        back = _answers(ports[victim.removesuffix("-api")])
                    elif victim.startswith("embedded-"):
                        back = all(_answers(port, "/readyz") for port in ports.values())
                    else:
                        back = True
                    if back:
                        break
                assert time.monotonic() < deadline, f"{victim} did not come back: {now}"
                time.sleep(0.3)
            assert unanswered == [], f"while {victim} was down"
            assert dev.poll() is None
        assert f'"child": "{victims[0]}"' in log.read_text()  # each death is logged with its name

        # After all that the stack works end to end: a recalculation goes through Redis to the coverage
        # worker and Postgres and back.
        token = httpx.post(
            f"http://127.0.0.1:{ports['registry']}/v1/auth/token", data={"username": "admin", "password": password}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        asked = httpx.post(f"http://127.0.0.1:{ports['coverage']}/v1/recalculations", headers=headers)
        assert asked.status_code == 202, asked.text
        recalculation = f"http://127.0.0.1:{ports['coverage']}/v1/recalculations/{asked.json()['id']}"
        deadline = time.monotonic() + 60
        while (status := httpx.get(recalculation, headers=headers).json()["status"]) != "done":
            assert time.monotonic() < deadline and status in ("queued", "running"), status
            time.sleep(0.5)
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(60)
    assert dev.returncode == 0
    assert _stack_processes(data_dir) == []
