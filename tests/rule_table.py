"""Which tests prove which rule: the `rule` markers of tests/, read without running them.

A test proves a rule when it carries the marker (``@pytest.mark.rule("C12")``, several ids
allowed, on the function, on its `Test*` class, in a module's `pytestmark`, or in the
`marks=` of a `pytest.param`) and it asserts something about behaviour. A marked test whose
body asserts nothing, or whose assertions compare only literals and constants with each
other, is reported as trivial and does not count (`Analyser.proves`).

docs/rules.md states every rule; under each one, between `<!-- proved-by:C12 -->` and
`<!-- /proved-by -->`, the list of the tests that prove it is generated from the markers:

    python -m tests.rule_table            # rule -> tests, rules without a test, trivial or unreadable markers
    python -m tests.rule_table --write    # rewrite the "Proved by" lists of docs/rules.md
    python -m tests.rule_table --check    # exit 1 with a diff when docs/rules.md is out of date

tests/test_rule_coverage.py runs the same checks in the suite.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
RULES_MD = REPO / "docs" / "rules.md"
WRITE_COMMAND = "python -m tests.rule_table --write"

# The handbook's 37 rules, in the order docs/rules.md states them.
EXPECTED_RULES: tuple[str, ...] = (
    "E1", "E2", *(f"C{i}" for i in range(1, 17)), *(f"D{i}" for i in range(1, 11)), *(f"A{i}" for i in range(1, 10)),
)

RULE_HEADING = re.compile(r"^## ([A-Z]\d+)\b", re.MULTILINE)
PROVED_BY = re.compile(r"(<!-- proved-by:([A-Z]\d+) -->\n)(.*?)(<!-- /proved-by -->)", re.DOTALL)
NONE_YET = "- none yet\n"


# ---------------------------------------------------------------------------- docs/rules.md
def rules_in(text: str) -> list[str]:
    """Rule IDs of docs/rules.md: one `## C12 ...` heading per rule, in the order written."""
    return RULE_HEADING.findall(text)


def proved_by_blocks(text: str) -> list[str]:
    """Rule IDs that have a generated "Proved by" block, in order."""
    return [m.group(2) for m in PROVED_BY.finditer(text)]


def render(text: str, proofs: Mapping[str, list[str]]) -> str:
    """docs/rules.md with every "Proved by" block rewritten from `proofs` (rule -> test node ids)."""

    def block(m: re.Match[str]) -> str:
        tests = proofs.get(m.group(2), [])
        body = "".join(f"- `{t}`\n" for t in tests) or NONE_YET
        return m.group(1) + body + m.group(4)

    return PROVED_BY.sub(block, text)


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


# ---------------------------------------------------------------------------- constants
# Builtins and value types that compute nothing new from constant arguments.
PURE_CALLS = frozenset({
    "len", "set", "frozenset", "list", "tuple", "dict", "sorted", "reversed", "str", "int", "float", "bool",
    "repr", "min", "max", "sum", "any", "all", "abs", "round", "isinstance", "issubclass", "type", "range",
    "enumerate", "zip", "hash", "format", "Decimal", "date", "datetime", "time", "timedelta", "approx",
})
# Methods of str, dict, list, set that only read their (constant) receiver.
PURE_METHODS = frozenset({
    "get", "keys", "values", "items", "count", "index", "copy", "upper", "lower", "strip", "lstrip", "rstrip",
    "split", "rsplit", "splitlines", "startswith", "endswith", "replace", "format", "join", "find", "rfind",
    "casefold", "title", "capitalize", "isdigit", "isalpha", "isupper", "islower", "partition", "issubset",
    "issuperset", "union", "intersection", "difference", "removeprefix", "removesuffix",
})
DUNDER_CONSTANTS = frozenset({"__name__", "__file__", "__doc__"})
RAISES_CONTEXTS = frozenset({"raises", "warns", "deprecated_call"})


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def is_constant(node: ast.AST | None, names: frozenset[str] | set[str]) -> bool:
    """True when `node` can only be a literal, a constant of `names`, or built from them."""
    if node is None:
        return True
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id in names or node.id in DUNDER_CONSTANTS
    if isinstance(node, ast.Attribute):
        return is_constant(node.value, names)
    if isinstance(node, ast.Subscript):
        return is_constant(node.value, names) and is_constant(node.slice, names)
    if isinstance(node, ast.Slice):
        return all(is_constant(n, names) for n in (node.lower, node.upper, node.step))
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(is_constant(e, names) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(is_constant(k, names) for k in node.keys) and all(is_constant(v, names) for v in node.values)
    if isinstance(node, ast.Starred):
        return is_constant(node.value, names)
    if isinstance(node, ast.BinOp):
        return is_constant(node.left, names) and is_constant(node.right, names)
    if isinstance(node, ast.UnaryOp):
        return is_constant(node.operand, names)
    if isinstance(node, ast.BoolOp):
        return all(is_constant(v, names) for v in node.values)
    if isinstance(node, ast.Compare):
        return is_constant(node.left, names) and all(is_constant(c, names) for c in node.comparators)
    if isinstance(node, ast.IfExp):
        return all(is_constant(n, names) for n in (node.test, node.body, node.orelse))
    if isinstance(node, ast.JoinedStr):
        return all(is_constant(v, names) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return is_constant(node.value, names) and is_constant(node.format_spec, names)
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        inner = set(names)
        for gen in node.generators:
            if not is_constant(gen.iter, inner):
                return False
            inner |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
            if not all(is_constant(c, inner) for c in gen.ifs):
                return False
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        return all(is_constant(p, inner) for p in parts)
    if isinstance(node, ast.Call):
        args = [*node.args, *(k.value for k in node.keywords)]
        if not all(is_constant(a, names) for a in args):
            return False
        if isinstance(node.func, ast.Name):
            return node.func.id in PURE_CALLS
        if isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            if node.func.attr in PURE_CALLS and isinstance(receiver, ast.Name) and receiver.id in (
                    "pytest", "decimal", "datetime"):
                return True
            return node.func.attr in PURE_METHODS and is_constant(receiver, names)
        return False
    return False


# ---------------------------------------------------------------------------- one parsed file
FuncDef = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class Module:
    path: str  # relative to the repository, with "/"
    name: str  # dotted: tests.test_x
    tree: ast.Module
    source: str
    functions: dict[str, FuncDef] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local name -> (module, attr)
    constants: set[str] = field(default_factory=set)


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _stored_names(tree: ast.AST) -> Iterator[str]:
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            yield n.id


MUTABLE_LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _mutated_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names this module may change: (changed in place or rebound from a function, passed to a call).

    In place: `global` in a function, an item or attribute assigned, `+=`, a method that is not a
    pure read called on it. Passed to a call other than a pure builtin: a mutable container may
    be filled by the callee (a fake that records what it was given)."""
    changed: set[str] = set()
    passed: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Global):
            changed.update(n.names)
        elif isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = n.targets if isinstance(n, (ast.Assign, ast.Delete)) else [n.target]
            for t in targets:
                root = _root_name(t)
                if root and (not isinstance(t, ast.Name) or isinstance(n, ast.AugAssign)):
                    changed.add(root)
        elif isinstance(n, ast.Call):
            if not (isinstance(n.func, ast.Name) and n.func.id in PURE_CALLS):
                for a in [*n.args, *(k.value for k in n.keywords)]:
                    a = a.value if isinstance(a, ast.Starred) else a
                    if isinstance(a, ast.Name):
                        passed.add(a.id)
            f = n.func
            if isinstance(f, ast.Attribute) and f.attr not in PURE_METHODS:
                root = _root_name(f.value)
                if root:
                    changed.add(root)
    return changed, passed


def parse_module(path: str, source: str) -> Module:
    tree = ast.parse(source, filename=path)
    m = Module(path=path, name=module_name(path), tree=tree, source=source)
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            m.functions[stmt.name] = stmt
        elif isinstance(stmt, ast.ClassDef):
            m.classes[stmt.name] = stmt
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                local = alias.asname or alias.name.split(".")[0]
                m.imports[local] = (alias.name if alias.asname else local, None)
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:
                package = m.name.split(".")[: -stmt.level]
                base = ".".join(package + ([stmt.module] if stmt.module else []))
            for alias in stmt.names:
                m.imports[alias.asname or alias.name] = (base, alias.name)
    return m


def module_constants(m: Module, others: Mapping[str, Module]) -> set[str]:
    """Module-level names whose value is a constant and that nothing changes.

    Imported names are constants as roots (an enum member, a product module's constant, a
    class, a function object), unless this module changes them, or they come from a module of
    tests/ that does not hold them constant. A local binding in a function shadows them
    (Analyser.local_constants)."""
    changed, passed = _mutated_names(m.tree)
    bindings: dict[str, int] = {}
    for stmt in m.tree.body:
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            for name in _stored_names(stmt):
                bindings[name] = bindings.get(name, 0) + 1
    known: set[str] = set()
    for local, (origin, attr) in m.imports.items():
        if local in changed or local in bindings:
            continue
        src = others.get(origin)
        if src is not None and attr is not None and attr not in src.functions and attr not in src.classes and (
                attr not in src.constants):
            continue  # a name of tests/ that its own module may change
        known.add(local)
    for stmt in m.tree.body:
        value: ast.expr | None = None
        target: ast.expr | None = None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        if not isinstance(target, ast.Name) or bindings.get(target.id) != 1 or target.id in changed:
            continue
        mutable = isinstance(value, MUTABLE_LITERALS) or (
            isinstance(value, ast.Call) and _call_name(value.func) in ("list", "dict", "set"))
        if mutable and target.id in passed:
            continue
        if is_constant(value, known):
            known.add(target.id)
    return known


def link(modules: Mapping[str, Module]) -> dict[str, Module]:
    """Module constants computed in import order (a module of tests/ before those importing from it)."""
    by_name = {m.name: m for m in modules.values()}
    done: set[str] = set()

    def visit(m: Module, stack: tuple[str, ...] = ()) -> None:
        if m.name in done or m.name in stack:
            return
        for origin, _ in m.imports.values():
            if origin in by_name:
                visit(by_name[origin], (*stack, m.name))
        m.constants = module_constants(m, by_name)
        done.add(m.name)

    for m in modules.values():
        visit(m)
    return dict(modules)


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


# ---------------------------------------------------------------------------- does a test assert?
class Analyser:
    """Whether a test checks behaviour: an `assert` on something other than constants, a
    `pytest.raises` around code, a conditional `raise` or `pytest.fail`, an assert/expect
    helper given something other than constants, or a call of a helper of tests/ that does
    one of these with the arguments it is given (followed a few calls deep)."""

    MAX_DEPTH = 8

    def __init__(self, modules: Mapping[str, Module]) -> None:
        self.modules = modules
        self.by_name = {m.name: m for m in modules.values()}
        self._memo: dict[tuple[int, frozenset[str]], bool] = {}
        self._infos: dict[int, tuple[list[ast.AST], dict[ast.AST, ast.AST]]] = {}
        self._methods: dict[str, list[tuple[Module, ast.ClassDef, FuncDef]]] = {}
        for m in modules.values():
            for cls in m.classes.values():
                for item in cls.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        self._methods.setdefault(item.name, []).append((m, cls, item))

    # -- entry point
    def proves(self, mod: Module, fn: FuncDef, cls: ast.ClassDef | None = None) -> tuple[bool, str]:
        if self._checks(mod, fn, cls, frozenset(), depth=0):
            return True, ""
        asserts = [n for n in ast.walk(fn) if isinstance(n, ast.Assert)]
        if asserts:
            return False, "its assertions compare only literals and constants with each other"
        return False, "it asserts nothing (no assert, pytest.raises, or assert/expect helper on a result)"

    # -- scope
    @staticmethod
    def _params(fn: FuncDef) -> list[ast.arg]:
        a = fn.args
        return [*a.posonlyargs, *a.args, *a.kwonlyargs]

    def _info(self, fn: FuncDef) -> tuple[list[ast.AST], dict[ast.AST, ast.AST]]:
        """Every node of `fn` (nested functions included) and the parent of each."""
        info = self._infos.get(id(fn))
        if info is None:
            nodes: list[ast.AST] = list(ast.walk(fn))
            parents = {child: node for node in nodes for child in ast.iter_child_nodes(node)}
            info = self._infos[id(fn)] = (nodes, parents)
        return info

    def local_constants(self, fn: FuncDef, base: set[str]) -> set[str]:
        """Names bound in `fn` only to constants and read only by assertions: what the test wrote itself."""
        nodes, parents = self._info(fn)
        stores: dict[str, list[ast.AST]] = {}
        loads: dict[str, list[ast.Name]] = {}
        nested: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Name):
                (stores if isinstance(node.ctx, (ast.Store, ast.Del)) else loads).setdefault(node.id, []).append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not fn:
                nested.add(node.name)
            elif isinstance(node, ast.arg):
                nested.add(node.arg)  # parameters of fn and of its nested functions and lambdas
        shadowed = set(stores) | nested
        names = {n for n in base if n not in shadowed}
        candidates = set(stores) - nested
        changed = True
        while changed:
            changed = False
            for name in sorted(candidates):
                ok = True
                for s in stores[name]:
                    p = parents.get(s)
                    if (isinstance(p, ast.Assign) and p.targets == [s]) or (
                            isinstance(p, ast.AnnAssign) and p.target is s and p.value is not None):
                        ok = is_constant(p.value, names | (candidates - {name}))
                    elif isinstance(p, (ast.For, ast.AsyncFor)) and p.target is s:
                        ok = is_constant(p.iter, names | (candidates - {name}))
                    else:
                        ok = False
                    if not ok:
                        break
                if ok:
                    for use in loads.get(name, []):
                        stmt = use
                        while stmt in parents and not isinstance(stmt, ast.stmt):
                            stmt = parents[stmt]
                        if isinstance(stmt, ast.Assert):
                            continue
                        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and any(
                                isinstance(t, ast.Name) and t.id in candidates
                                for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])):
                            continue
                        if isinstance(stmt, (ast.For, ast.AsyncFor)) and isinstance(stmt.target, ast.Name) and (
                                stmt.target.id in candidates) and _inside(use, stmt.iter, parents):
                            continue
                        ok = False
                        break
                if not ok:
                    candidates.discard(name)
                    changed = True
        return names | candidates

    # -- the walk
    def _checks(self, mod: Module, fn: FuncDef, cls: ast.ClassDef | None, const_params: frozenset[str],
                depth: int) -> bool:
        key = (id(fn), const_params)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = False  # recursion: a helper calling itself proves nothing more
        names = self.local_constants(fn, set(mod.constants)) | set(const_params)
        nodes, parents = self._info(fn)
        result = any(self._is_check(node, mod, fn, cls, names, parents, depth) for node in nodes)
        self._memo[key] = result
        return result

    def _is_check(self, node: ast.AST, mod: Module, fn: FuncDef, cls: ast.ClassDef | None, names: set[str],
                  parents: dict[ast.AST, ast.AST], depth: int) -> bool:
        if isinstance(node, ast.Assert):
            return not is_constant(node.test, names)
        if isinstance(node, ast.Raise):
            if node.exc is None or self._in_raises_block(node, parents):
                return False
            return self._guard_is_live(node, fn, names, parents)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                c = item.context_expr
                if (isinstance(c, ast.Call) and self._is_pytest(c.func, RAISES_CONTEXTS, mod)
                        and any(not self._inert(s, names) for s in node.body)):
                    return True
            return False
        if isinstance(node, ast.Call):
            return self._call_checks(node, mod, fn, cls, names, parents, depth)
        return False

    def _call_checks(self, call: ast.Call, mod: Module, fn: FuncDef, cls: ast.ClassDef | None, names: set[str],
                     parents: dict[ast.AST, ast.AST], depth: int) -> bool:
        if self._is_pytest(call.func, {"fail"}, mod):
            return self._guard_is_live(call, fn, names, parents)
        if self._is_pytest(call.func, RAISES_CONTEXTS, mod):
            return len(call.args) >= 2  # pytest.raises(E, fn, *args): calls fn
        args = [*call.args, *(k.value for k in call.keywords)]
        target = self._resolve(call, mod, cls, names, depth) if depth < self.MAX_DEPTH else None
        if target is not None:
            t_mod, t_cls, t_fn, bound = target
            return self._checks(t_mod, t_fn, t_cls, self._const_params(call, t_fn, bound, names), depth + 1)
        name = _call_name(call.func)
        if name and name.lstrip("_").lower().startswith(("assert", "expect")):
            receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
            live_receiver = receiver is not None and not is_constant(receiver, names) and not (
                isinstance(receiver, ast.Name) and receiver.id in mod.imports)
            return live_receiver or any(not is_constant(a, names) for a in args)
        return False

    @staticmethod
    def _inert(stmt: ast.stmt, names: set[str]) -> bool:
        """A statement inside `pytest.raises` that runs no code under test."""
        if isinstance(stmt, (ast.Pass, ast.Raise)):
            return True
        return isinstance(stmt, ast.Expr) and is_constant(stmt.value, names)

    @staticmethod
    def _in_raises_block(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
        p = parents.get(node)
        while p is not None:
            if isinstance(p, (ast.With, ast.AsyncWith)) and any(
                    isinstance(i.context_expr, ast.Call) and _call_name(i.context_expr.func) in RAISES_CONTEXTS
                    for i in p.items):
                return True
            p = parents.get(p)
        return False

    @staticmethod
    def _guard_is_live(node: ast.AST, fn: FuncDef, names: set[str], parents: dict[ast.AST, ast.AST]) -> bool:
        """A failure (raise, pytest.fail) counts unless only constant conditions lead to it."""
        guards: list[ast.expr] = []
        child, p = node, parents.get(node)
        while p is not None and child is not fn:
            if isinstance(p, (ast.If, ast.While, ast.IfExp)):
                if child is not p.test:
                    guards.append(p.test)
            elif isinstance(p, (ast.For, ast.AsyncFor, ast.ExceptHandler, ast.Match)):
                return True  # after a loop, in an except clause, in a match case: it depends on the run
            child, p = p, parents.get(p)
        return not guards or any(not is_constant(g, names) for g in guards)

    def _is_pytest(self, func: ast.expr, attrs: set[str] | frozenset[str], mod: Module) -> bool:
        if isinstance(func, ast.Attribute) and func.attr in attrs:
            v = func.value
            return isinstance(v, ast.Name) and mod.imports.get(v.id, ("", None))[0] == "pytest"
        if isinstance(func, ast.Name) and func.id in attrs:
            return mod.imports.get(func.id, ("", None))[0] == "pytest"
        return False

    # -- helpers of tests/
    def _resolve(self, call: ast.Call, mod: Module, cls: ast.ClassDef | None, names: set[str], depth: int
                 ) -> tuple[Module, ast.ClassDef | None, FuncDef, bool] | None:
        """The tests/ function a call runs, and whether its first parameter is bound (self)."""
        f = call.func
        if isinstance(f, ast.Name):
            if f.id in mod.functions:
                return mod, None, mod.functions[f.id], False
            if f.id in mod.imports:
                origin, attr = mod.imports[f.id]
                src = self.by_name.get(origin)
                if src is not None and attr in src.functions:
                    return src, None, src.functions[attr], False
            return None
        if isinstance(f, ast.Attribute):
            v = f.value
            if isinstance(v, ast.Name) and v.id in ("self", "cls") and cls is not None:
                for item in cls.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == f.attr:
                        return mod, cls, item, True
            if isinstance(v, ast.Name) and v.id in mod.imports:
                origin, attr = mod.imports[v.id]
                src = self.by_name.get(f"{origin}.{attr}" if attr else origin)
                if src is not None and f.attr in src.functions:
                    return src, None, src.functions[f.attr], False
                return None
            if is_constant(v, names):
                return None
            # A method of an object built elsewhere (a fixture's Stack, a page object): any class of
            # tests/ that defines it; one that checks is enough.
            for m, c, item in self._methods.get(f.attr, []):
                if self._checks(m, item, c, self._const_params(call, item, True, names), depth + 1):
                    return m, c, item, True
        return None

    def _const_params(self, call: ast.Call, fn: FuncDef, bound: bool, names: set[str]) -> frozenset[str]:
        """Parameters of `fn` that this call gives only constants (defaults included)."""
        params = self._params(fn)
        positional = [*fn.args.posonlyargs, *fn.args.args][1 if bound else 0:]
        given: dict[str, ast.expr] = {}
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return frozenset()
        for p, a in zip(positional, call.args, strict=False):
            given[p.arg] = a
        for k in call.keywords:
            if k.arg:
                given[k.arg] = k.value
        defaults = dict(zip([p.arg for p in positional][-len(fn.args.defaults):] if fn.args.defaults else [],
                            fn.args.defaults, strict=False))
        defaults |= {p.arg: d for p, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True) if d}
        out = set()
        for p in params[1 if bound else 0:]:
            expr = given.get(p.arg, defaults.get(p.arg))
            if expr is not None and is_constant(expr, names):
                out.add(p.arg)
        return frozenset(out)


def _inside(node: ast.AST, container: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    p: ast.AST | None = node
    while p is not None:
        if p is container:
            return True
        p = parents.get(p)
    return False


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


def expected_rules_md(scan: Scan, text: str) -> str:
    return render(text, scan.proofs())


def diff(current: str, expected: str) -> str:
    return "".join(difflib.unified_diff(current.splitlines(keepends=True), expected.splitlines(keepends=True),
                                        "docs/rules.md", f"docs/rules.md (from the markers: {WRITE_COMMAND})"))


def report(scan: Scan, rules: list[str]) -> str:
    proofs = scan.proofs()
    lines = []
    for rule in rules:
        tests = proofs.get(rule, [])
        lines.append(f"{rule:4} {len(tests):3}  " + (", ".join(t.split('::', 1)[1] for t in tests[:3])
                                                     + (" ..." if len(tests) > 3 else "") if tests else "NONE"))
    missing = [r for r in rules if r not in proofs]
    lines.append(f"\nrules without a marked test that asserts: {', '.join(missing) or 'none'}")
    for t in scan.trivial():
        lines.append(f"trivial (does not count): {t.nodeid} [{', '.join(t.rules)}]: {t.why}")
    lines += [f"problem: {p}" for p in scan.problems]
    lines += [f"unknown: {u}" for u in scan.unknown_rules(rules)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.rule_table", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="rewrite the Proved by lists of docs/rules.md")
    group.add_argument("--check", action="store_true", help="exit 1 with a diff when docs/rules.md is out of date")
    args = parser.parse_args(argv)
    text = RULES_MD.read_text(encoding="utf-8")
    scan = scan_tests()
    expected = expected_rules_md(scan, text)
    if args.write:
        if expected != text:
            RULES_MD.write_text(expected, encoding="utf-8")
            print(f"docs/rules.md: Proved by lists rewritten from the markers ({len(scan.marked)} marked tests)")
        else:
            print("docs/rules.md: already up to date")
        print(report(scan, rules_in(text)))
        return 0
    if args.check:
        if expected != text:
            sys.stdout.write(diff(text, expected))
            print(f"\ndocs/rules.md is out of date with the rule markers: run {WRITE_COMMAND}")
            return 1
        print("docs/rules.md matches the rule markers")
        return 0
    print(report(scan, rules_in(text)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
