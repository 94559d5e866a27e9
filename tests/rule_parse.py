"""One file of tests/, parsed for tests/rule_table.py: its functions, classes and imports, and
which of its names can only hold a constant (`is_constant`, `module_constants`, `link`).

A test whose assertions compare only such constants with each other proves nothing
(tests/rule_asserts.py); what counts as a constant is decided here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

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


def call_name(func: ast.expr) -> str | None:
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
            isinstance(value, ast.Call) and call_name(value.func) in ("list", "dict", "set"))
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
