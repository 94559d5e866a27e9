"""House rules that keep workflow code deterministic (docs/design.md, layers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ["storage", "sqlalchemy", "jinja2", "aiosmtplib", "holidays", "activities", "aiosqlite", "asyncpg"]


def imported_by(modules: list[str]) -> set[str]:
    """Top-level packages loaded by importing `modules` in a fresh interpreter (indirect imports count)."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def workflow_modules() -> list[str]:
    return [f"workflows.{p.stem}" for p in sorted((ROOT / "workflows").glob("*.py")) if p.stem != "__init__"]


def test_workflows_import_no_io_libraries() -> None:
    loaded = imported_by(workflow_modules())
    bad = sorted(set(FORBIDDEN) & loaded)
    assert not bad, f"workflow modules import {bad} (directly or indirectly)"


def test_the_check_can_fail() -> None:
    # The same probe sees storage when it is imported: the check above is not vacuous.
    assert "sqlalchemy" in imported_by(["storage.tables"])


def test_workflow_sources_do_not_read_the_clock() -> None:
    for path in (ROOT / "workflows").glob("*.py"):
        text = path.read_text()
        for needle in ("datetime.now(", "datetime.utcnow(", "date.today(", "time.time(", "random."):
            assert needle not in text, f"{path.name} uses {needle}: use workflow.now() / workflow.random()"
