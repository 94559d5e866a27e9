"""The layers of docs/design.md, enforced: faces never import each other, nothing below imports a face,
domain/ imports no I/O library, and workflow code stays deterministic."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"domain", "config", "telemetry", "workflows", "storage", "activities", "starter", "worker",
        "cli", "portal", "inbound", "bench", "devstack", "testing", "tests"}
FACES = {"cli", "portal", "inbound", "bench"}
# Below the faces: what a face, the worker or the embedded stack builds on. devstack (what `make run`
# starts) sits above everything; testing/ holds rigs that tests/ and bench/ share.
BELOW = {"domain", "config", "telemetry", "workflows", "storage", "activities", "starter", "worker", "testing"}
ABOVE = FACES | {"devstack", "tests"}
IO_LIBRARIES = ["sqlalchemy", "aiosqlite", "asyncpg", "aiosmtplib", "aiosmtpd", "jinja2", "httpx", "fastapi",
                "starlette", "uvicorn", "holidays", "matplotlib", "argon2"]
WORKFLOW_FORBIDDEN = ["storage", "sqlalchemy", "jinja2", "aiosmtplib", "holidays", "activities", "aiosqlite",
                      "asyncpg"]


def package_of(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def libraries_imported_in(path: Path) -> set[str]:
    """Every top-level name `path` imports, in a function too: what a fresh-interpreter import misses."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def imports_of(path: Path) -> set[str]:
    """Our top-level packages that `path` imports, at module level or inside a function."""
    return libraries_imported_in(path) & OURS


def import_edges(root: Path = ROOT) -> set[tuple[str, str, str]]:
    """(file, its package, a package of ours it imports) for every Python file of the project."""
    edges: set[tuple[str, str, str]] = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0].startswith(".") or "migrations" in rel.parts or package_of(rel) not in OURS:
            continue
        src = package_of(rel)
        edges |= {(rel.as_posix(), src, dst) for dst in imports_of(path) if dst != src}
    return edges


def forbidden(edges: set[tuple[str, str, str]]) -> list[str]:
    bad = []
    for file, src, dst in sorted(edges):
        if src in FACES and dst in FACES:
            bad.append(f"{file}: the {src} face imports the {dst} face (faces share starter/, never each other)")
        elif src in BELOW and dst in ABOVE:
            bad.append(f"{file}: {src}/ is below the faces and imports {dst}")
        elif src == "domain" or (src == "config" and dst != "domain"):
            bad.append(f"{file}: {src}/ is at the bottom and imports {dst}")
        elif dst == "tests" and src != "tests":
            bad.append(f"{file}: imports tests/ (shared rigs live in testing/)")
    return bad


def test_import_directions_hold() -> None:
    bad = forbidden(import_edges())
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("file", "line", "complaint"),
    [
        ("cli/extra.py", "from portal import app", "the cli face imports the portal face"),
        ("portal/extra.py", "import cli.app", "the portal face imports the cli face"),
        ("bench/extra.py", "from portal.routers import api", "the bench face imports the portal face"),
        ("starter/extra.py", "from cli import runtime", "starter/ is below the faces and imports cli"),
        ("storage/extra.py", "from portal.state import get_state", "storage/ is below the faces and imports portal"),
        ("activities/extra.py", "from devstack import dev", "activities/ is below the faces and imports devstack"),
        ("domain/extra.py", "from storage import users", "domain/ is at the bottom and imports storage"),
        ("config/extra.py", "from starter import programs", "config/ is at the bottom and imports starter"),
        ("bench/extra.py", "from tests import harness", "imports tests/"),
    ],
)
def test_each_forbidden_direction_is_caught(tmp_path: Path, file: str, line: str, complaint: str) -> None:
    # The same check on a tree holding one forbidden import: it cannot pass vacuously.
    (tmp_path / file).parent.mkdir(parents=True)
    (tmp_path / file).write_text(f"def later() -> None:\n    {line}\n")
    bad = forbidden(import_edges(tmp_path))
    assert len(bad) == 1 and complaint in bad[0], bad


def imported_by(modules: list[str]) -> set[str]:
    """Top-level packages loaded by importing `modules` in a fresh interpreter (indirect imports count)."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def modules_of(package: str) -> list[str]:
    return [f"{package}.{p.stem}" for p in sorted((ROOT / package).glob("*.py")) if p.stem != "__init__"]


def test_domain_imports_no_io_library() -> None:
    loaded = imported_by(modules_of("domain"))
    bad = sorted((set(IO_LIBRARIES) | (OURS - {"domain"})) & loaded)
    assert not bad, f"domain modules import {bad} (directly or indirectly)"


def test_workflows_import_no_io_libraries() -> None:
    loaded = imported_by(modules_of("workflows"))
    bad = sorted(set(WORKFLOW_FORBIDDEN) & loaded)
    assert not bad, f"workflow modules import {bad} (directly or indirectly)"


def late_imports(root: Path, package: str, libraries: list[str]) -> list[str]:
    return [f"{p.relative_to(root).as_posix()} imports {sorted(set(libraries) & libraries_imported_in(p))}"
            for p in sorted((root / package).glob("*.py")) if set(libraries) & libraries_imported_in(p)]


def test_no_io_library_imported_later_either() -> None:
    # An import inside a function escapes the fresh-interpreter probe above until that function runs.
    bad = late_imports(ROOT, "domain", IO_LIBRARIES) + late_imports(ROOT, "workflows", WORKFLOW_FORBIDDEN)
    assert not bad, "\n".join(bad)


def test_the_late_import_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "domain").mkdir()
    (tmp_path / "domain" / "money.py").write_text("def later() -> None:\n    import sqlalchemy\n")
    assert late_imports(tmp_path, "domain", IO_LIBRARIES) == ["domain/money.py imports ['sqlalchemy']"]


def test_the_check_can_fail() -> None:
    # The same probe sees storage when it is imported: the checks above are not vacuous.
    assert "sqlalchemy" in imported_by(["storage.tables"])


# The workflow modules that build on others (program, support request, cycle) import their mixins and
# helpers passed through the sandbox (docs/design.md), so the sandbox no longer stops those from reading
# the clock, the environment or a random source at run time: this check does, for every workflow module.
NON_DETERMINISTIC = {
    "the clock": r"\b(datetime\.(now|utcnow)|date\.today|time\.(time|monotonic|perf_counter))\(",
    "a random source": r"\brandom\.|(?<!workflow\.)\buuid[14]\(",  # workflow.uuid4() is deterministic
    "the environment": r"\bos\.(environ|getenv)\b",
    "a file": r"(?<![\w.])open\(",  # the builtin, not a method such as `_step_open(`
}


def nondeterministic_calls(text: str) -> list[str]:
    return [what for what, pattern in NON_DETERMINISTIC.items() if re.search(pattern, text)]


def test_workflow_sources_do_not_read_the_clock() -> None:
    for path in (ROOT / "workflows").glob("*.py"):
        bad = nondeterministic_calls(path.read_text())
        assert not bad, f"{path.name} uses {bad}: use workflow.now() / workflow.random() / workflow.uuid4()"


@pytest.mark.parametrize("line", ["at = datetime.now(UTC)", "n = random.randint(1, 6)", "k = uuid.uuid4()",
                                  "v = os.environ['X']", "with open('f') as f:", "t = time.monotonic()"])
def test_the_clock_check_can_fail(line: str) -> None:
    assert nondeterministic_calls(f"def f():\n    {line}\n"), line
    assert not nondeterministic_calls("def f():\n    self._step_open(workflow.uuid4(), workflow.now())\n")


def test_every_activity_the_workflows_call_is_registered_on_the_worker(tmp_path: Path) -> None:
    """An activity called by name (workflows/activity_calls.py) but missing from `ActivitySet.all()` only
    shows at run time, as a workflow retrying "not registered on this worker" for ever."""
    from temporalio.activity import _Definition

    from config.settings import Settings
    from storage.db import make_engine, make_session_factory
    from worker import build_activities
    from workflows import activity_calls

    called = {c.name for c in vars(activity_calls).values() if isinstance(c, activity_calls.ActivityCall)}
    sessions = make_session_factory(make_engine(f"sqlite+aiosqlite:///{tmp_path}/a.db"))
    registered = {_Definition.must_from_callable(f).name
                  for f in build_activities(Settings(data_dir=tmp_path), sessions).all()}
    assert len(called) > 20 and called <= registered, f"called but not registered: {sorted(called - registered)}"


MAX_MODULE_LINES = 500  # house style: a longer module is split along the concepts it already has


def long_modules(root: Path = ROOT) -> dict[str, int]:
    """Python files of the project (tests included, migrations too) longer than MAX_MODULE_LINES."""
    found: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0].startswith(".") or "node_modules" in rel.parts:
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            found[rel.as_posix()] = lines
    return found


def test_no_module_is_longer_than_500_lines(tmp_path: Path) -> None:
    assert not long_modules(), f"split along their concepts: {long_modules()}"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_long.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    assert long_modules(tmp_path) == {"tests/test_long.py": MAX_MODULE_LINES + 1}  # the check can fail
