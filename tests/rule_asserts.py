"""Does a marked test really assert? `Analyser.proves` judges a test of tests/ without running it.

It counts an `assert` on something other than constants (tests/rule_parse.py), a
`pytest.raises` around code, a conditional `raise` or `pytest.fail`, an assert/expect helper
given something other than constants, and a call of a helper of tests/ that does one of these.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from tests.rule_parse import RAISES_CONTEXTS, FuncDef, Module, call_name, is_constant


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
        name = call_name(call.func)
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
                    isinstance(i.context_expr, ast.Call) and call_name(i.context_expr.func) in RAISES_CONTEXTS
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
