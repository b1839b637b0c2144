# Invario ledger service image.
#
#   docker build -t invario:local .
#   docker run --rm -p 8000:8000 -e INVARIO_DATABASE_URL=postgresql://... -e INVARIO_AUTH_PEPPER=... invario:local
#
# Two stages: the first builds a virtualenv with the package and its
# dependencies; the second copies only that virtualenv onto a clean base, so no
# compiler, pip cache or source tree ships. The process runs as an unprivileged
# user. docs/deploy.md explains every setting used here.

# Pin by digest in production (python:3.11-slim-bookworm@sha256:...) so a rebuild is reproducible.
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/invario

WORKDIR /src
# Only what the package needs: docs, tests and ops material stay out (.dockerignore too).
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY application ./application
COPY infrastructure ./infrastructure
COPY projections ./projections
COPY interfaces ./interfaces
RUN /opt/invario/bin/pip install --no-cache-dir . \
    && /opt/invario/bin/invario --version


FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="invario" \
      org.opencontainers.image.description="Event-sourced, tamper-evident double-entry ledger service"

# A fixed uid/gid so volumes and Kubernetes securityContext can name it.
RUN groupadd --system --gid 10001 invario \
    && useradd --system --uid 10001 --gid invario --home-dir /var/lib/invario --create-home \
       --shell /usr/sbin/nologin invario

COPY --from=build /opt/invario /opt/invario

ENV PATH=/opt/invario/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INVARIO_HOST=0.0.0.0 \
    INVARIO_PORT=8000 \
    INVARIO_DATABASE_URL=sqlite:////var/lib/invario/invario.db

WORKDIR /var/lib/invario
USER 10001:10001

EXPOSE 8000

# Liveness through the API's own /health (database reachable, hash chains intact).
# python's urllib: the slim image has no curl, and none is installed for this.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/health' % os.environ.get('INVARIO_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

# SIGTERM (docker stop) lets the API finish in-flight requests; give it 30 s
# (docker stop --time 35, compose stop_grace_period) before SIGKILL.
STOPSIGNAL SIGTERM

CMD ["invario", "serve", "--host", "0.0.0.0"]
