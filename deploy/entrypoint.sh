#!/bin/sh
# Entrypoint of the Liangxin image: starts one process, chosen by its role.
#
#   api registry|coverage|evaluation [uvicorn options]   the service's HTTP API (8001/8002/8003)
#   worker registry|coverage|evaluation [arq options]    the service's arq worker
#   relay                                                the outbox relay
#   migrate [--revision R] [--downgrade]                 apply the Alembic migrations, then exit
#   wait-for-migrations [--timeout S]                    exit 0 once the database is at the latest
#                                                        revision (a Kubernetes init container)
#   liangxin <args>                                      any other `liangxin` command (user create, ...)
#
# Every process is exec'd, so it is PID 1 and receives the orchestrator's SIGTERM itself.
# Configuration comes from the LIANGXIN_* variables (see the README's configuration table).
set -eu

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

service_port() {
    case "$1" in
        registry) echo 8001 ;;
        coverage) echo 8002 ;;
        evaluation) echo 8003 ;;
        *)
            echo "unknown service '$1': expected registry, coverage or evaluation" >&2
            exit 64
            ;;
    esac
}

role="${1:-help}"
[ "$#" -gt 0 ] && shift

case "$role" in
    api)
        service="${1:-}"
        port=$(service_port "$service")
        shift
        # The app logs one JSON line per request itself, so uvicorn's access log stays off.
        # Options given after the service (e.g. --workers 2) come last and win.
        exec uvicorn "services.${service}.main:app" --host 0.0.0.0 --port "$port" \
            --no-access-log --timeout-graceful-shutdown 20 "$@"
        ;;
    worker)
        service="${1:-}"
        service_port "$service" >/dev/null
        shift
        exec arq "services.${service}.jobs.WorkerSettings" "$@"
        ;;
    relay)
        exec liangxin relay "$@"
        ;;
    migrate)
        exec liangxin migrate "$@"
        ;;
    wait-for-migrations)
        exec python /opt/liangxin/wait_for_migrations.py "$@"
        ;;
    liangxin)
        exec liangxin "$@"
        ;;
    help | -h | --help)
        usage
        ;;
    *)
        echo "unknown role '$role'" >&2
        usage >&2
        exit 64
        ;;
esac
