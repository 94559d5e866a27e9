# The two commands of the README: `make run` and `make test`. Both install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck pytest clean constraints browser pdf-libs bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) browser pdf-libs

# Debian's chromium for the browser tests (tests/test_monthly_report.py renders the report with it).
# Installed when missing and we are root; otherwise a note, and those tests skip (they fail when CI=true).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else echo "note: chromium is not on PATH and this is not root: browser tests will skip (run: sudo apt-get install -y chromium)"; fi

# WeasyPrint's libraries and fonts (document PDFs, storage/pdfs.py) and poppler-utils' pdftotext, with which
# tests/test_document_pdf.py reads the PDFs back. Installed when missing and we are root, like chromium.
PDF_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils
pdf-libs:
	@missing=$$(for p in $(PDF_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else echo "note: missing $$missing and this is not root: document PDFs cannot be rendered (run: sudo apt-get install -y $$missing)"; fi

run: install
	$(BIN)/techconnect dev

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

# Benchmarks (bench/, issue 7): measures on the embedded dev server, writes bench/results.md, prints
# one `name: value` line per figure. About 10 minutes on 2 cores; run it on a quiet machine.
bench: $(STAMP)
	$(BIN)/python -m bench

# Exact runtime versions for the Dockerfile (`pip install -c constraints.txt .`).
constraints: install
	$(BIN)/python deploy/constraints.py

clean:
	rm -rf .data .artefacts .pytest_cache .mypy_cache .ruff_cache
