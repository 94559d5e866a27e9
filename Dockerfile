# One image for the worker, the command line and (later) the portal.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --create-home --uid 10001 techconnect
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY storage ./storage
COPY starter ./starter
COPY portal ./portal
COPY templates ./templates
COPY worker.py ./
RUN pip install --no-cache-dir .
USER techconnect
ENV TECHCONNECT_DATA_DIR=/tmp/techconnect
ENTRYPOINT ["techconnect"]
CMD ["worker"]
