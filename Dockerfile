# One image for every Liangxin process; the role is the first argument of the entrypoint:
#   docker run IMAGE api registry|coverage|evaluation
#   docker run IMAGE worker registry|coverage|evaluation
#   docker run IMAGE relay | migrate | wait-for-migrations | liangxin <args>
# See deploy/entrypoint.sh and deploy/README.md. Pin PYTHON_IMAGE by digest for production builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: compilers, wheels for the package and every dependency, a venv from them --------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Only needed when a dependency has no wheel for this platform; never reaches the final stage.
# Unpinned on purpose: whatever Debian ships in the base image's release (hadolint DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY migrations ./migrations

# The package without the [embedded] and [test] extras: production uses real Postgres and Redis.
RUN pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels liangxin \
 && /opt/venv/bin/pip uninstall -y pip setuptools

# ---- final: the interpreter, the venv and the entrypoint; no compilers, no pip cache ----------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="liangxin" \
      org.opencontainers.image.description="Liangxin registry, coverage and evaluation services"

# The photo folder (LIANGXIN_PHOTO_DIR in deploy/) belongs to the service user: a new Docker volume
# mounted there takes its owner from the image, so the coverage API can write to it.
RUN groupadd --system --gid 10001 liangxin \
 && useradd --system --uid 10001 --gid liangxin --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin liangxin \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/liangxin /var/lib/liangxin/photos

COPY --from=builder /opt/venv /opt/venv
COPY deploy/entrypoint.sh /usr/local/bin/liangxin-entrypoint
COPY deploy/wait_for_migrations.py /opt/liangxin/wait_for_migrations.py
RUN chmod 0755 /usr/local/bin/liangxin-entrypoint && chmod 0644 /opt/liangxin/wait_for_migrations.py

# Bytecode was compiled at install time; the root filesystem may be read-only at run time, so
# nothing is written beside the code. Anything that needs a scratch folder gets /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    LIANGXIN_ENV=production

WORKDIR /app
USER 10001:10001
EXPOSE 8001 8002 8003
ENTRYPOINT ["liangxin-entrypoint"]
CMD ["help"]
