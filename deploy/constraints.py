"""Write constraints.txt: the exact versions of this venv for everything the runtime needs.

`make constraints` runs it. It is `pip freeze --exclude-editable` restricted to the
closure of pyproject's [project.dependencies] (extras included, markers evaluated for this
Linux/CPython 3.11 venv, the same as the image), so dev tools never reach the image.
The Dockerfile installs with `pip install -c constraints.txt .`; tests/test_compose.py
checks that every dependency of pyproject.toml is pinned here.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return [Requirement(r) for r in data["project"]["dependencies"]]


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Canonical name -> installed version, for the roots and everything they pull in."""
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        req, extras = todo.pop()
        key = (canonicalize_name(req.name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            sys.exit(f"{req.name} is required but not installed in this venv: run `make install` first")
        pinned[key[0]] = dist.version
        for raw in dist.requires or []:
            sub = Requirement(raw)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append((sub, frozenset(sub.extras)))
    return pinned


def render(pinned: dict[str, str]) -> str:
    lines = [
        "# Exact versions of the runtime dependencies (pyproject [project.dependencies] and what they pull in).",
        "# Generated from the dev venv by `make constraints` (deploy/constraints.py); do not edit by hand.",
        "# Used by the Dockerfile: pip install -c constraints.txt .",
    ]
    lines += [f"{name}=={version}" for name, version in sorted(pinned.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    pinned = closure(runtime_requirements())  # exits with a message, before writing, if something is missing
    target = ROOT / "constraints.txt"
    target.write_text(render(pinned), encoding="utf-8")
    print(f"{target.name}: {len(pinned)} packages pinned")


if __name__ == "__main__":
    main()
