"""The check of tests/test_dates_are_relative.py: reads every test module's syntax tree and reports a literal
date taken for "the future", a literal date handed to what moves time or feeds a programme, and the
machine's local calendar (the module docstring of the test says what each means and why)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CLOCK_CALLS = frozenset({"now", "today", "utcnow", "get_current_time", "sleep_until", "start_time_skipping",
                         "start_dev_server", "start_local", "move_to_requested_now"})
SERVER_TYPES = frozenset({"Stack", "WorkflowEnvironment", "Client", "WorkflowHandle"})
SEAM_CALLS = frozenset({"sleep_until", "sleep", "add_subscription", "subscribe", "enrolment", "enrolment_doc",
                        "begin", "started", "live_programme"})
SEAM_KEYWORDS = frozenset({"period_start", "at", "now"})  # a programme's start, the instant a thing happens
EDGE_YEARS = frozenset({1, 9999})
ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
WAIVER = re.compile(r"#\s*local-clock:\s*\S")


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    kind: str  # future | seam | local clock
    unit: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.unit}) {self.kind}: {self.what}"


@dataclass
class Unit:
    module: str
    name: str
    node: ast.AST
    fixture: bool = False
    params: list[str] = field(default_factory=list)


@dataclass
class Module:
    name: str
    path: str
    tree: ast.Module
    lines: list[str]
    units: dict[str, Unit] = field(default_factory=dict)
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)


# ------------------------------------------------------------------------------ literals
def _int(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int(node.operand)
        return None if inner is None else -inner
    return None


def _callee(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _constructed(node: ast.Call) -> date | None:
    """date(Y, M, D) / datetime(Y, M, D, ...) with constant arguments."""
    if _callee(node) not in ("date", "datetime"):
        return None
    parts: dict[str, int | None] = dict(zip(("year", "month", "day"), (_int(a) for a in node.args[:3]), strict=False))
    for kw in node.keywords:
        if kw.arg in ("year", "month", "day"):
            parts[kw.arg] = _int(kw.value)
    try:
        return date(parts["year"], parts["month"], parts["day"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None


def _timedelta(node: ast.AST) -> timedelta | None:
    if not (isinstance(node, ast.Call) and _callee(node) == "timedelta"):
        return None
    units = ("days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks")
    values: dict[str, int] = {}
    for unit, arg in zip(units, node.args, strict=False):
        v = _int(arg)
        if v is None:
            return None
        values[unit] = v
    for kw in node.keywords:
        v = _int(kw.value)
        if kw.arg not in units or v is None:
            return None
        values[kw.arg] = v
    return timedelta(**values)


def literal_dates(node: ast.AST) -> Iterator[tuple[ast.AST, date]]:
    """Every date literal in `node` (see the module docstring), with the node that holds it.
    Docstrings are text, not values: skipped."""
    skip: set[int] = set()
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and n.body:
            first = n.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                skip.add(id(first.value))
    for n in ast.walk(node):
        if id(n) in skip:
            continue
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
            base = _constructed(n.left) if isinstance(n.left, ast.Call) else None
            delta = _timedelta(n.right)
            if base is not None and delta is not None:
                at = datetime.combine(base, time())
                try:
                    yield n, (at + delta if isinstance(n.op, ast.Add) else at - delta).date()
                except OverflowError:
                    pass
                continue
        if isinstance(n, ast.Call):
            made = _constructed(n)
            if made is not None:
                yield n, made
            elif _callee(n) == "replace":
                year = next((_int(kw.value) for kw in n.keywords if kw.arg == "year"), None)
                if year is not None and 1 <= year <= 9999:
                    yield n, date(year, 1, 1)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            for m in ISO_DATE.finditer(n.value):
                try:
                    yield n, date(int(m[1]), int(m[2]), int(m[3]))
                except ValueError:
                    pass  # "2027-13-01": an invalid date, given on purpose to a parser


# ------------------------------------------------------------------------------ modules
def _is_fixture(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if (isinstance(target, ast.Attribute) and target.attr == "fixture") or \
                (isinstance(target, ast.Name) and target.id == "fixture"):
            return True
    return False


def parse(name: str, path: str, source: str) -> Module:
    tree = ast.parse(source)
    mod = Module(name=name, path=path, tree=tree, lines=source.splitlines())
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = stmt.args
            params = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            mod.units[stmt.name] = Unit(name, stmt.name, stmt, _is_fixture(stmt), params)
        elif isinstance(stmt, ast.ClassDef):
            mod.units[stmt.name] = Unit(name, stmt.name, stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        mod.units[n.id] = Unit(name, n.id, stmt)
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.module.startswith("tests"):
            for alias in stmt.names:
                mod.imports[alias.asname or alias.name] = (stmt.module, alias.name)
    return mod


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _reads_a_clock(unit: Unit) -> bool:
    for n in ast.walk(unit.node):
        if isinstance(n, ast.Call):
            name = _callee(n)
            if name in CLOCK_CALLS:
                return True
            f = n.func
            if name == "time" and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                    and f.value.id == "time":
                return True
        if isinstance(n, ast.arg) and n.annotation is not None and _names(n.annotation) & SERVER_TYPES:
            return True
        if isinstance(n, ast.Name) and n.id == "WorkflowEnvironment" and isinstance(n.ctx, ast.Load) \
                and not isinstance(unit.node, ast.ClassDef):
            return True
    return False


class Suite:
    """The test modules, their units (top-level functions, classes, constants) and what uses what."""

    def __init__(self, modules: list[Module]) -> None:
        self.modules = {m.name: m for m in modules}

    def resolve(self, module: str, name: str, depth: int = 0) -> Unit | None:
        mod = self.modules.get(module)
        if mod is None or depth > 5:
            return None
        if name in mod.units:
            return mod.units[name]
        if name in mod.imports:
            return self.resolve(*mod.imports[name], depth=depth + 1)
        return None

    def uses(self, unit: Unit) -> list[Unit]:
        found = []
        for name in _names(unit.node):
            if name == unit.name:
                continue
            target = self.resolve(unit.module, name)
            if target is not None and target is not unit:
                found.append(target)
        return found

    def fixture(self, module: str, name: str) -> Unit | None:
        for where in (module, "tests.conftest"):
            target = self.resolve(where, name)
            if target is not None and target.fixture:
                return target
        return None

    def live(self) -> set[int]:
        """Units that run against a clock (ids of Unit objects)."""
        units = [u for m in self.modules.values() for u in m.units.values()]
        live = {id(u) for u in units if _reads_a_clock(u)}
        changed = True
        while changed:
            changed = False
            for u in units:
                if id(u) in live:
                    continue
                deps = self.uses(u) + [f for p in u.params if (f := self.fixture(u.module, p)) is not None]
                if any(id(d) in live for d in deps):
                    live.add(id(u))
                    changed = True
        return live

    def reached(self, live: set[int]) -> list[Unit]:
        """Live units and everything they use, transitively."""
        units = {id(u): u for m in self.modules.values() for u in m.units.values()}
        seen: set[int] = set()
        todo = [units[i] for i in live]
        while todo:
            u = todo.pop()
            if id(u) in seen:
                continue
            seen.add(id(u))
            todo += self.uses(u) + [f for p in u.params if (f := self.fixture(u.module, p)) is not None]
        return [units[i] for i in seen]

    def constant_dates(self, module: str, node: ast.AST, local: dict[str, list[ast.AST]] | None = None,
                       depth: int = 0) -> Iterator[date]:
        """Date literals in `node`, through the names it uses: the function's own assignments
        (`local`: `monday = date(2027, 3, 15)`) and the constants of test modules."""
        for _, d in literal_dates(node):
            yield d
        if depth < 3:
            for name in _names(node):
                for value in (local or {}).get(name, []):
                    yield from self.constant_dates(module, value, local, depth + 1)
                target = self.resolve(module, name)
                if target is not None and isinstance(target.node, (ast.Assign, ast.AnnAssign)) \
                        and target.node.value is not None:
                    yield from self.constant_dates(target.module, target.node.value, None, depth + 1)


def _assignments(node: ast.AST) -> dict[str, list[ast.AST]]:
    """name -> the values assigned to it inside `node` (a function): plain and tuple assignments."""
    found: dict[str, list[ast.AST]] = {}
    for n in ast.walk(node):
        if isinstance(n, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and n.value is not None:
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    found.setdefault(t.id, []).append(n.value)
                elif isinstance(t, ast.Tuple) and isinstance(n.value, ast.Tuple) and len(t.elts) == len(n.value.elts):
                    for name, value in zip(t.elts, n.value.elts, strict=True):
                        if isinstance(name, ast.Name):
                            found.setdefault(name.id, []).append(value)
    return found


def _seam_arguments(node: ast.AST) -> Iterator[ast.AST]:
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            if _callee(n) in SEAM_CALLS:
                yield from n.args
                yield from (kw.value for kw in n.keywords)
            else:
                yield from (kw.value for kw in n.keywords if kw.arg in SEAM_KEYWORDS)
        elif isinstance(n, ast.Dict):
            yield from (v for k, v in zip(n.keys, n.values, strict=True)
                        if isinstance(k, ast.Constant) and k.value in SEAM_KEYWORDS)


def _local_clock(node: ast.Call) -> str | None:
    f = node.func
    if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)):
        return None
    owner, name = f.value.id, f.attr
    if owner in ("date", "datetime") and name == "today":
        return f"{owner}.today()"
    if owner == "datetime" and name == "now" and not node.args and not any(k.arg == "tz" for k in node.keywords):
        return "datetime.now() without a time zone"
    return None


def scan(sources: dict[str, str], today: date) -> list[Hit]:
    """`sources`: module name ("tests.test_x") -> source text. The hits, in file order."""
    modules = [parse(name, name.replace(".", "/") + ".py", text) for name, text in sources.items()]
    suite = Suite(modules)
    live = suite.live()
    hits: set[Hit] = set()
    for u in suite.reached(live):
        mod = suite.modules[u.module]
        for n, d in literal_dates(u.node):
            if d > today and d.year not in EDGE_YEARS:
                hits.add(Hit(mod.path, getattr(n, "lineno", 0), "future", u.name,
                             f"{d.isoformat()} is later than today ({today.isoformat()}) in a test that runs "
                             "against a clock: compute it from the clock (tests/calendar_positions.py)"))
        if id(u) in live:
            local = _assignments(u.node)
            for arg in _seam_arguments(u.node):
                found = sorted({d for d in suite.constant_dates(u.module, arg, local) if d.year not in EDGE_YEARS})
                if found:
                    hits.add(Hit(mod.path, getattr(arg, "lineno", 0), "seam", u.name,
                                 f"literal date(s) {[d.isoformat() for d in found]} handed to what moves time or "
                                 f"feeds a programme ({ast.unparse(arg)[:80]}): compute them from the server's now"))
    for mod in modules:
        for n in ast.walk(mod.tree):
            if isinstance(n, ast.Call) and (what := _local_clock(n)) is not None:
                line = mod.lines[n.lineno - 1] if n.lineno <= len(mod.lines) else ""
                if not WAIVER.search(line):
                    hits.add(Hit(mod.path, n.lineno, "local clock", "-",
                                 f"{what}: the machine's local calendar; use the server's now or a time zone"))
    return sorted(hits, key=lambda h: (h.path, h.line, h.kind))
