"""Reading the `rule` markers of tests/ without running them: which tests carry which rule ids.

A marker is read on the function, on its `Test*` class, in a module's `pytestmark`, or in the
`marks=` of a `pytest.param`; a marker the scan cannot read exactly is reported as a problem.
Each marked test is judged by tests/rule_asserts.py (does it really assert?).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.rule_asserts import Analyser
from tests.rule_parse import FuncDef, Module, link, parse_module

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


# ---------------------------------------------------------------------------- what the scan finds
@dataclass
class MarkedTest:
    nodeid: str  # tests/test_x.py::test_y or tests/test_x.py::TestK::test_y
    path: str
    line: int
    rules: tuple[str, ...]
    proves: bool  # asserts something that is not a constant compared with a constant
    why: str = ""  # when it does not prove: what is missing


@dataclass
class Scan:
    marked: list[MarkedTest] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # markers the scan cannot read exactly

    def proofs(self) -> dict[str, list[str]]:
        """Rule -> node ids of the marked tests that prove it (trivial ones left out)."""
        out: dict[str, list[str]] = {}
        for t in sorted(self.marked, key=lambda t: (t.path, t.line)):
            if t.proves:
                for rule in t.rules:
                    out.setdefault(rule, []).append(t.nodeid)
        return out

    def trivial(self) -> list[MarkedTest]:
        return [t for t in self.marked if not t.proves]

    def unknown_rules(self, known: Iterable[str]) -> list[str]:
        known = set(known)
        return sorted({f"{t.nodeid}: rule {r!r}" for t in self.marked for r in t.rules if r not in known})


# ---------------------------------------------------------------------------- markers
def _is_rule_mark(node: ast.AST) -> bool:
    """`pytest.mark.rule` or `mark.rule` (the attribute, not yet called)."""
    if not (isinstance(node, ast.Attribute) and node.attr == "rule"):
        return False
    v = node.value
    return (isinstance(v, ast.Attribute) and v.attr == "mark") or (isinstance(v, ast.Name) and v.id == "mark")


def _rule_calls(node: ast.AST) -> Iterator[ast.Call]:
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and _is_rule_mark(n.func):
            yield n


def _mark_token_ends(source: str) -> dict[tuple[int, int], int]:
    """End position of every `mark` name followed by `.rule` in code (not in strings or comments)."""
    toks = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)]
    out: dict[tuple[int, int], int] = {}
    for a, b, c in zip(toks, toks[1:], toks[2:], strict=False):
        if a.type == tokenize.NAME and a.string == "mark" and b.string == "." and c.string == "rule":
            out[a.end] = a.start[0]
    return out


class Scanner:
    """Finds the marked tests of a set of modules, and the markers it cannot read exactly."""

    def __init__(self, modules: Mapping[str, Module]) -> None:
        self.modules = modules
        self.analyser = Analyser(modules)
        self.scan = Scan()
        self._understood: set[tuple[str, tuple[int, int]]] = set()

    def run(self) -> Scan:
        for mod in self.modules.values():
            self._module(mod)
            for end, line in _mark_token_ends(mod.source).items():
                if (mod.path, end) not in self._understood:
                    self.scan.problems.append(
                        f"{mod.path}:{line}: `mark.rule` used in a way this scan does not read; write "
                        f"@pytest.mark.rule(\"C12\") on the test or its class, or pytestmark = pytest.mark.rule(...)")
        return self.scan

    def _ids(self, mod: Module, call: ast.Call) -> tuple[str, ...]:
        assert isinstance(call.func, ast.Attribute)
        v = call.func.value
        self._understood.add((mod.path, (v.end_lineno or 0, v.end_col_offset or 0)))
        ids: list[str] = []
        for a in call.args:
            if isinstance(a, ast.Constant) and isinstance(a.value, str):
                ids.append(a.value)
            else:
                self.scan.problems.append(f"{mod.path}:{call.lineno}: rule marker arguments must be literal "
                                          f"strings such as \"C12\", got `{ast.unparse(a)}`")
        if call.keywords:
            self.scan.problems.append(f"{mod.path}:{call.lineno}: the rule marker takes rule ids only, "
                                      f"no keyword arguments")
        if not call.args:
            self.scan.problems.append(f"{mod.path}:{call.lineno}: a rule marker without a rule id")
        return tuple(ids)

    def _marks_of(self, mod: Module, exprs: Iterable[ast.expr]) -> tuple[str, ...]:
        ids: list[str] = []
        for e in exprs:
            for call in _rule_calls(e):
                ids += self._ids(mod, call)
        return tuple(ids)

    def _pytestmark(self, mod: Module, body: list[ast.stmt]) -> tuple[str, ...]:
        ids: tuple[str, ...] = ()
        for stmt in body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets) and stmt.value:
                    ids += self._marks_of(mod, [stmt.value])
        return ids

    def _test(self, mod: Module, fn: FuncDef, inherited: tuple[str, ...], cls: ast.ClassDef | None) -> None:
        own = self._marks_of(mod, fn.decorator_list)
        rules = tuple(dict.fromkeys(inherited + own))
        if not rules:
            return
        nodeid = f"{mod.path}::{cls.name}::{fn.name}" if cls else f"{mod.path}::{fn.name}"
        proves, why = self.analyser.proves(mod, fn, cls)
        self.scan.marked.append(MarkedTest(nodeid=nodeid, path=mod.path, line=fn.lineno, rules=rules,
                                           proves=proves, why=why))

    def _not_a_test(self, mod: Module, node: ast.AST, what: str) -> None:
        for call in _rule_calls(node):
            self._ids(mod, call)
            self.scan.problems.append(f"{mod.path}:{call.lineno}: rule marker on {what}, which pytest does not "
                                      f"collect as a test")

    def _module(self, mod: Module) -> None:
        module_marks = self._pytestmark(mod, mod.tree.body)
        collected = Path(mod.path).name.startswith("test_") or Path(mod.path).name.endswith("_test.py")
        for stmt in mod.tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if collected and stmt.name.startswith("test"):
                    self._test(mod, stmt, module_marks, None)
                else:
                    self._not_a_test(mod, ast.Module(body=list(stmt.decorator_list), type_ignores=[]),
                                     f"{stmt.name}()")
            elif isinstance(stmt, ast.ClassDef):
                is_test_class = collected and stmt.name.startswith("Test")
                class_marks = self._marks_of(mod, stmt.decorator_list) + self._pytestmark(mod, stmt.body)
                if not is_test_class and class_marks:
                    self.scan.problems.append(f"{mod.path}:{stmt.lineno}: rule marker on class {stmt.name}, "
                                              f"which pytest does not collect")
                for item in stmt.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        if is_test_class and item.name.startswith("test"):
                            self._test(mod, item, module_marks + class_marks, stmt)
                        else:
                            self._not_a_test(mod, ast.Module(body=list(item.decorator_list), type_ignores=[]),
                                             f"{stmt.name}.{item.name}()")
            elif not (isinstance(stmt, (ast.Assign, ast.AnnAssign)) and any(
                    isinstance(t, ast.Name) and t.id == "pytestmark"
                    for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]))):
                self._not_a_test(mod, stmt, "a statement that is not a test")


# ---------------------------------------------------------------------------- entry points
def load_modules(root: Path = REPO) -> dict[str, Module]:
    out: dict[str, Module] = {}
    for path in sorted((root / "tests").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        out[rel] = parse_module(rel, path.read_text(encoding="utf-8"))
    return out


def scan_sources(sources: Mapping[str, str]) -> Scan:
    """Scan in-memory files ({"tests/test_x.py": source}); what the self-tests use."""
    return Scanner(link({p: parse_module(p, s) for p, s in sources.items()})).run()


def scan_tests(root: Path = REPO) -> Scan:
    return Scanner(link(load_modules(root))).run()
