"""The deployment files: image, entrypoint, compose file and Kubernetes manifests agree with the
process list in deploy/README.md and with each other, and validate with real tools where present.

No Docker engine is needed (none runs on CI): `docker compose config` only reads files. The
Kubernetes manifests are rendered with `kubectl kustomize` when it is on PATH, else with
tests/kustomize_lite.py, and every object is validated against the Kubernetes JSON schemas that
the `kubernetes-validate` package ships (strict: unknown fields are errors).
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from shared.settings import Environment, Settings
from tests.kustomize_lite import render

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SERVICES = ("registry", "coverage", "evaluation")
PORTS = {"registry": 8001, "coverage": 8002, "evaluation": 8003}
SECRET_SETTINGS = ("LIANGXIN_JWT_SECRET", "LIANGXIN_API_KEY_PEPPER", "LIANGXIN_PII_HASH_KEY")
# Carry a password inside the URL, so they belong in a Secret too.
SECRET_URLS = ("LIANGXIN_DATABASE_URL", "LIANGXIN_REDIS_URL")
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes the manifests are checked against
Obj = dict[str, Any]


# ---- the process list ------------------------------------------------------------------


def readme_commands() -> list[str]:
    """The commands of deploy/README.md's process table (its first section), `<service>` expanded."""
    text = (DEPLOY / "README.md").read_text().split("\n## ", 1)[0]
    commands: list[str] = []
    for command in re.findall(r"^\| [^|]+ \| `([^`]+)` \| [^|]+ \|$", text, flags=re.M):
        if "<service>" in command:
            commands.extend(command.replace("<service>", service) for service in SERVICES)
        else:
            commands.append(command)
    return commands


def test_process_list_names_every_process() -> None:
    commands = readme_commands()
    assert "liangxin migrate" in commands and "liangxin relay" in commands
    for service, port in PORTS.items():
        assert f"uvicorn services.{service}.main:app --host 0.0.0.0 --port {port}" in commands
        assert f"arq services.{service}.jobs.WorkerSettings" in commands
    assert len(commands) == 8


# ---- the entrypoint --------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH whose uvicorn, arq, liangxin and python print what they were started with."""
    folder = tmp_path_factory.mktemp("stubs")
    for name in ("uvicorn", "arq", "liangxin", "python"):
        stub = folder / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return f"{folder}:/usr/bin:/bin"


def entrypoint(stub_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), *args],
        capture_output=True,
        text=True,
        env={"PATH": stub_path},
        timeout=30,
        check=False,
    )


def started_by(stub_path: str, role: list[str]) -> str:
    """The command the entrypoint execs for a role, without the options it adds."""
    done = entrypoint(stub_path, *role)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().replace(" --no-access-log --timeout-graceful-shutdown 20", "")


def test_entrypoint_starts_every_process_of_the_list(stub_path: str) -> None:
    roles = [["migrate"], ["relay"]] + [[kind, s] for kind in ("api", "worker") for s in SERVICES]
    assert sorted(started_by(stub_path, role) for role in roles) == sorted(readme_commands())


def test_entrypoint_passes_options_and_refuses_unknown_roles(stub_path: str) -> None:
    api = entrypoint(stub_path, "api", "coverage", "--workers", "2").stdout.strip()
    assert api == (
        "uvicorn services.coverage.main:app --host 0.0.0.0 --port 8002 --no-access-log "
        "--timeout-graceful-shutdown 20 --workers 2"
    )
    assert entrypoint(stub_path, "migrate", "--revision", "abc").stdout.strip() == "liangxin migrate --revision abc"
    assert entrypoint(stub_path, "liangxin", "user", "create").stdout.strip() == "liangxin user create"
    waits = entrypoint(stub_path, "wait-for-migrations", "--timeout", "5").stdout.strip()
    assert waits == "python /opt/liangxin/wait_for_migrations.py --timeout 5"
    for bad in (["api", "ledger"], ["worker"], ["serve"]):
        done = entrypoint(stub_path, *bad)
        assert done.returncode == 64 and done.stdout == "", (bad, done)
    assert "worker registry|coverage|evaluation" in entrypoint(stub_path, "help").stdout


# ---- the image -------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuation lines joined) per stage; stage 0 holds the global ARGs."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    preamble, builder, final = dockerfile_stages()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in preamble
    assert builder[0] == "FROM ${PYTHON_IMAGE} AS builder" and final[0] == "FROM ${PYTHON_IMAGE} AS runtime"
    build = " ".join(builder)
    assert "pip wheel --wheel-dir /wheels ." in build
    assert "--no-index --find-links /wheels liangxin" in build
    assert "[embedded]" not in build and "[test]" not in build and ".[" not in build
    runtime = " ".join(final)
    for compiler in ("build-essential", "gcc", "apt-get install", "pip install", "/wheels "):
        assert compiler not in runtime, compiler
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["liangxin-entrypoint"]' in final
    assert "LIANGXIN_ENV=production" in runtime


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "*", "an allow-list: everything else (.env, .venv, .liangxin) stays out"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied: set[str] = set()
    for stage in dockerfile_stages():
        for line in stage:
            if line.startswith("COPY ") and "--from=" not in line:
                copied.update(part.rstrip("/").removeprefix("./") for part in line.split()[1:-1])
    assert copied == allowed
    for path in copied:
        assert (ROOT / path).exists(), path
    entry = (DEPLOY / "entrypoint.sh").read_text()
    assert "/opt/liangxin/wait_for_migrations.py" in entry
    assert any(
        "deploy/wait_for_migrations.py /opt/liangxin/wait_for_migrations.py" in line
        for stage in dockerfile_stages()
        for line in stage
    )


def linter(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip(f"{name} is not installed (it comes with the [test] extra)")
    return found


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [linter("hadolint"), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = [DEPLOY / "entrypoint.sh", ROOT / ".ci" / "install-compose", ROOT / ".ci" / "run"]
    done = subprocess.run(
        [linter("shellcheck"), *map(str, scripts)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---- wait-for-migrations (the Kubernetes init container) ----------------------------------


def wait_for_migrations(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIANGXIN_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, str(DEPLOY / "wait_for_migrations.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_wait_for_migrations_passes_on_a_migrated_database(stack: Any) -> None:
    done = wait_for_migrations(stack.database_url, "--timeout", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("migrations done: database at ['")


async def test_wait_for_migrations_waits_on_an_empty_database(stack: Any) -> None:
    empty = await stack.new_database()
    done = wait_for_migrations(empty, "--timeout", "1", "--interval", "0.2")
    assert done.returncode == 1
    assert "waiting for migrations: database at no revision" in done.stdout
    assert "gave up waiting for migrations" in done.stderr


# ---- docker-compose.yml ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Obj:
    data: Obj = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def app_services(compose: Obj) -> dict[str, Obj]:
    return {name: spec for name, spec in compose["services"].items() if "liangxin" in str(spec.get("image"))}


def test_compose_runs_every_process_of_the_list(compose: Obj, stub_path: str) -> None:
    apps = app_services(compose)
    assert set(compose["services"]) - set(apps) == {"postgres", "redis", "minio"}
    assert sorted(started_by(stub_path, spec["command"]) for spec in apps.values()) == sorted(readme_commands())
    assert compose["services"]["postgres"]["image"].startswith("postgres:16")
    assert compose["services"]["redis"]["image"].startswith("redis:7")


def test_compose_migrations_gate_the_other_processes(compose: Obj) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, spec in app_services(compose).items():
        if name == "migrate":
            continue
        assert spec["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert spec["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert spec["restart"] in ("unless-stopped", "always"), name


def test_compose_health_checks(compose: Obj) -> None:
    services = compose["services"]
    for service, port in PORTS.items():
        api = services[f"{service}-api"]
        test = " ".join(api["healthcheck"]["test"])
        assert test.startswith("CMD python -c ") and f"http://127.0.0.1:{port}/readyz" in test
        assert "curl" not in test and "wget" not in test  # the slim image has neither
        assert api["ports"] == [f"${{LISTEN_ADDRESS:-127.0.0.1}}:{port}:{port}"]
        worker = services[f"{service}-worker"]
        assert worker["healthcheck"]["test"] == ["CMD", "arq", "--check", f"services.{service}.jobs.WorkerSettings"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])


def test_compose_keeps_data_in_named_volumes_with_redis_aof(compose: Obj) -> None:
    services = compose["services"]
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "miniodata"}
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert services["redis"]["volumes"] == ["redisdata:/data"]
    assert services["minio"]["volumes"] == ["miniodata:/data"]
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    for name, spec in app_services(compose).items():
        assert spec["read_only"] is True and spec["tmpfs"] == ["/tmp"], name
        assert spec["user"] == "10001:10001" and spec["cap_drop"] == ["ALL"], name


def test_compose_keeps_photos_in_minio_where_only_the_coverage_api_reaches_them(compose: Obj) -> None:
    """Photos go to the MinIO service over the S3 API, its data on the volume `miniodata`; only the
    coverage API (the process that stores and serves them) holds the store's settings and secret,
    and no app container mounts anything (read-only root filesystems keep nothing)."""
    services, apps = compose["services"], app_services(compose)
    minio = services["minio"]
    assert minio["image"].startswith("minio/minio:RELEASE.") and minio["command"] == ["server", "/data"]
    assert minio["networks"] == ["backend"] and "ports" not in minio  # internal network only
    assert minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    coverage = apps["coverage-api"]
    env = coverage["environment"]
    assert env["LIANGXIN_PHOTO_STORE"] == "s3" and env["LIANGXIN_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["LIANGXIN_S3_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
    assert env["LIANGXIN_S3_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    assert interpolated(env["LIANGXIN_S3_SECRET_ACCESS_KEY"])
    assert coverage["depends_on"]["minio"]["condition"] == "service_healthy"
    # The rest of the coverage API's environment is every app's.
    assert {k: v for k, v in env.items() if not k.startswith(("LIANGXIN_S3_", "LIANGXIN_PHOTO_"))} == (
        apps["registry-api"]["environment"]
    )
    for name, spec in apps.items():
        assert spec["read_only"] is True and spec.get("volumes", []) == [], name
        if name != "coverage-api":
            assert not any(k.startswith(("LIANGXIN_S3_", "LIANGXIN_PHOTO_")) for k in spec["environment"]), name
    settings = Settings.model_validate(
        {
            "env": "production",
            "database_url": "postgresql://liangxin:x@postgres/liangxin",
            "redis_url": "redis://redis:6379/0",
            **{name.removeprefix("LIANGXIN_").lower(): secrets.token_hex(32) for name in SECRET_SETTINGS},
            "photo_store": env["LIANGXIN_PHOTO_STORE"],
            "s3_endpoint_url": env["LIANGXIN_S3_ENDPOINT_URL"],
            "s3_access_key_id": "liangxin",
            "s3_secret_access_key": secrets.token_hex(32),
        }
    )
    assert settings.photo_store == "s3"
    # The local folder stays for Kubernetes without object storage: the image makes it the service user's.
    runtime = " ".join(dockerfile_stages()[-1])
    assert re.search(r"install -d -o 10001 -g 10001 -m 0750 [^&]*/var/lib/liangxin/photos", runtime)


def interpolated(value: str) -> bool:
    return re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value) is not None


def test_compose_inlines_no_secret(compose: Obj) -> None:
    for name, spec in compose["services"].items():
        environment = spec.get("environment", {})
        for key, value in environment.items():
            if key in SECRET_SETTINGS or key.endswith("PASSWORD"):
                assert interpolated(value), (name, key)
            if key in SECRET_URLS:
                credentials = re.fullmatch(r"[a-z]+://([^@]*)@.+", value)
                assert credentials and interpolated(credentials.group(1).split(":", 1)[1]), (name, key)
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert not re.search(r"[A-Za-z0-9_\-]{32,}", text), "something that looks like a key is written out"


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def test_env_example_covers_every_required_variable_and_cannot_be_deployed_as_is() -> None:
    example = env_file(DEPLOY / ".env.example")
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (DEPLOY / "docker-compose.yml").read_text()))
    assert required == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", *SECRET_SETTINGS}
    assert required <= set(example)
    assert example["LIANGXIN_ENV"] == "production"
    assert "openssl rand -hex 32" in (DEPLOY / ".env.example").read_text()
    for name in required:
        assert example[name] == "change-me", name
    # Copied unchanged, the example's secrets are refused by the services themselves.
    values = {
        "env": "production",
        "database_url": "postgresql://liangxin:x@postgres/liangxin",
        "redis_url": "redis://redis:6379/0",
        **{name.removeprefix("LIANGXIN_").lower(): secrets.token_hex(32) for name in SECRET_SETTINGS},
    }
    assert Settings.model_validate(values).env is Environment.production
    for name in SECRET_SETTINGS:
        with pytest.raises(ValidationError, match=name):
            Settings.model_validate({**values, name.removeprefix("LIANGXIN_").lower(): example[name]})
    # The photo store's secret too (MinIO's root password, the coverage API's S3 secret).
    with pytest.raises(ValidationError, match="LIANGXIN_S3_SECRET_ACCESS_KEY"):
        Settings.model_validate(
            {**values, "photo_store": "s3", "s3_access_key_id": "liangxin", "s3_secret_access_key": "change-me"}
        )


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    found = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    return [docker, "compose"] if found.returncode == 0 else None


def test_docker_compose_config_validates_the_file() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` CLI here (.ci/install-compose installs it on CI)")
    base = [*cli, "-f", str(DEPLOY / "docker-compose.yml")]
    done = subprocess.run(
        [*base, "--env-file", str(DEPLOY / ".env.example"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["services"]["migrate"]["environment"]["LIANGXIN_ENV"] == "production"
    photos = config["services"]["coverage-api"]
    assert photos["environment"]["LIANGXIN_PHOTO_STORE"] == "s3" and "volumes" not in photos
    assert photos["environment"]["LIANGXIN_S3_SECRET_ACCESS_KEY"] == "change-me"  # from the env file
    [mount] = config["services"]["minio"]["volumes"]
    assert (mount["type"], mount["source"], mount["target"]) == ("volume", "miniodata", "/data")
    assert photos["read_only"] is True and "miniodata" in config["volumes"]
    assert config["services"]["registry-api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Without the env file the required secrets stop it, naming the first one missing.
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", *SECRET_SETTINGS)}
    bare = subprocess.run(
        [*base, "--env-file", os.devnull, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert bare.returncode != 0 and "required variable" in bare.stderr


# ---- Kubernetes ------------------------------------------------------------------------


def kubectl_render(directory: Path) -> list[Obj] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=True
    )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_key(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}


@pytest.fixture(scope="module", params=["base", "overlays/production"])
def rendered(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[tuple[str, str], Obj]]]:
    directory = K8S / request.param
    objects = kubectl_render(directory) or render(directory)
    yield request.param, by_key(objects)


def test_kustomize_lite_renders_what_kubectl_renders() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("no kubectl here: the manifests are rendered by tests/kustomize_lite.py alone")
    for directory in (K8S / "base", K8S / "overlays/production"):
        theirs = kubectl_render(directory)
        assert theirs is not None
        assert by_key(render(directory)) == by_key(theirs), directory


def test_every_object_validates_against_the_kubernetes_schema(rendered: tuple[str, dict[Any, Obj]]) -> None:
    _, objects = rendered
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(objects[("Deployment", "registry-api")])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):  # the validator does catch a typo
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def pod_specs(objects: dict[Any, Obj]) -> dict[str, Obj]:
    return {
        name: obj["spec"]["template"]["spec"] for (kind, name), obj in objects.items() if kind in ("Deployment", "Job")
    }


def test_k8s_runs_every_process_of_the_list(rendered: tuple[str, dict[Any, Obj]], stub_path: str, compose: Obj) -> None:
    _, objects = rendered
    kinds: dict[str, set[str]] = {}
    for kind, name in objects:
        kinds.setdefault(kind, set()).add(name)
    apis = {f"{s}-api" for s in SERVICES}
    workers = {f"{s}-worker" for s in SERVICES}
    assert kinds["Deployment"] == apis | workers | {"relay"}
    assert kinds["Job"] == {"liangxin-migrate"}
    assert kinds["Service"] == apis
    assert kinds["HorizontalPodAutoscaler"] == apis | workers
    assert kinds["PodDisruptionBudget"] == apis | workers
    assert "Secret" not in kinds, "secrets are created outside the repository and only referenced"
    roles = [spec["containers"][0]["args"] for spec in pod_specs(objects).values()]
    assert sorted(started_by(stub_path, role) for role in roles) == sorted(readme_commands())
    assert sorted(map(tuple, roles)) == sorted(tuple(s["command"]) for s in app_services(compose).values())


def test_k8s_probes_services_and_autoscaling(rendered: tuple[str, dict[Any, Obj]]) -> None:
    _, objects = rendered
    for service, port in PORTS.items():
        name = f"{service}-api"
        api = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        assert api["ports"] == [{"name": "http", "containerPort": port}]
        assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert objects[("Service", name)]["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
        worker = objects[("Deployment", f"{service}-worker")]["spec"]["template"]["spec"]["containers"][0]
        check = ["arq", "--check", f"services.{service}.jobs.WorkerSettings"]
        assert worker["livenessProbe"]["exec"]["command"] == check
    for (kind, name), obj in objects.items():
        if kind == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]
            assert (target["kind"], target["name"]) == ("Deployment", name)
            assert "replicas" not in objects[("Deployment", name)]["spec"], "the HPA owns the replica count"
            assert 1 <= obj["spec"]["minReplicas"] < obj["spec"]["maxReplicas"]
        if kind in ("PodDisruptionBudget", "Service", "Deployment"):
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            pods = [
                o
                for (k, _), o in objects.items()
                if k == "Deployment" and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert len(pods) == 1, (kind, name)


def test_k8s_pods_are_locked_down_and_read_secrets_by_reference(rendered: tuple[str, dict[Any, Obj]]) -> None:
    _, objects = rendered
    for name, pod in pod_specs(objects).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"], name
        if name != "liangxin-migrate":
            assert [c["name"] for c in pod["initContainers"]] == ["wait-for-migrations"], name
            assert pod["initContainers"][0]["args"][0] == "wait-for-migrations"
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = (name, container["name"])
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
            assert set(container["resources"]) == {"requests", "limits"}, where
            assert container["envFrom"] == [
                {"configMapRef": {"name": "liangxin-config"}},
                {"secretRef": {"name": "liangxin-secrets"}},
            ], where
            assert "env" not in container, where


def test_k8s_keeps_photos_on_a_claim_mounted_by_every_coverage_api_pod(rendered: tuple[str, dict[Any, Obj]]) -> None:
    _, objects = rendered
    photo_dir = objects[("ConfigMap", "liangxin-config")]["data"]["LIANGXIN_PHOTO_DIR"]
    assert photo_dir == "/var/lib/liangxin/photos"  # the folder the image makes the service user's
    claim = objects[("PersistentVolumeClaim", "liangxin-photos")]
    # The coverage API runs several replicas, on any node: they all need the same files.
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["metadata"]["namespace"] == "liangxin"
    for name, pod in pod_specs(objects).items():
        claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] != "tmp"]
        if name != "coverage-api":
            assert claims == [] and mounts == [], name
            continue
        assert claims == [{"name": "photos", "persistentVolumeClaim": {"claimName": "liangxin-photos"}}]
        assert mounts == [{"name": "photos", "mountPath": photo_dir}]
        assert pod["securityContext"]["fsGroup"] == 10001  # writable by the service user
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_k8s_configmap_holds_only_real_non_secret_settings(rendered: tuple[str, dict[Any, Obj]]) -> None:
    _, objects = rendered
    data = objects[("ConfigMap", "liangxin-config")]["data"]
    settings = {f"LIANGXIN_{name.upper()}" for name in Settings.model_fields}
    assert set(data) <= settings, set(data) - settings
    assert not set(data) & {*SECRET_SETTINGS, *SECRET_URLS}
    assert data["LIANGXIN_ENV"] == "production"


def test_production_overlay_is_bigger_and_pinned() -> None:
    base = by_key(render(K8S / "base"))
    production = by_key(kubectl_render(K8S / "overlays/production") or render(K8S / "overlays/production"))
    for (kind, name), obj in production.items():
        if kind == "HorizontalPodAutoscaler":
            assert obj["spec"]["minReplicas"] > base[(kind, name)]["spec"]["minReplicas"], name
            assert obj["spec"]["maxReplicas"] > base[(kind, name)]["spec"]["maxReplicas"], name
        if kind in ("Deployment", "Job"):
            for container in [
                *obj["spec"]["template"]["spec"].get("initContainers", []),
                *obj["spec"]["template"]["spec"]["containers"],
            ]:
                image = container["image"]
                assert re.fullmatch(r"[a-z0-9.\-/]+/liangxin:\d+\.\d+\.\d+", image), (name, image)
        if kind == "Deployment" and name.endswith(("-api", "-worker")):
            bigger = obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            smaller = base[(kind, name)]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            assert (bigger, smaller) == ("1Gi", "512Mi"), name
    ingress = production[("Ingress", "liangxin")]
    backends = {
        path["backend"]["service"]["name"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]
    }
    assert backends == {f"{s}-api" for s in SERVICES}
    assert ("Ingress", "liangxin") not in base
