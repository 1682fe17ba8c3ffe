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


def _start_dev(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*LIANGXIN, "dev"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_dev_starts_the_embedded_stack_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = [free_port() for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIANGXIN_")}
    env.update(
        LIANGXIN_DATA_DIR=str(data_dir),
        LIANGXIN_REGISTRY_PORT=str(ports[0]),
        LIANGXIN_COVERAGE_PORT=str(ports[1]),
        LIANGXIN_EVALUATION_PORT=str(ports[2]),
        LIANGXIN_EMBEDDED_PG_PORT=str(free_port()),
        LIANGXIN_EMBEDDED_REDIS_PORT=str(free_port()),
        LIANGXIN_LOG_LEVEL="WARNING",
    )
    log = tmp_path / "dev.log"
    dev = _start_dev(env, log)
    try:
        _wait_ready(ports)
        output = log.read_text()
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
        assert "shown once" not in log.read_text()
        login = httpx.post(
            f"http://127.0.0.1:{ports[0]}/v1/auth/token",
            data={"username": "keeper", "password": "kept-across-restarts"},
        )
        assert login.status_code == 200
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
    assert _stack_processes(data_dir) == []
