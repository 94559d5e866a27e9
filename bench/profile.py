"""Reads a pyinstrument session into the few numbers results.md shows: where the time went."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_PROJECT = ("workflows", "activities", "domain", "storage", "starter", "bench", "worker", "tests")
# Packages every stack passes through (the event loop, the worker's dispatch, the bench's wrapper):
# their inclusive time is "everything", so only their self time is shown.
_WRAPPERS = {"generated code", "bench", "stdlib asyncio", "stdlib runpy", "stdlib contextlib", "stdlib concurrent",
             "stdlib threading", "temporalio.worker._worker", "temporalio.worker._workflow",
             "temporalio.worker._activity", "worker"}


def module_of(path: str | None) -> str:
    """A short owner for a source file: `pydantic`, `temporalio.worker.workflow_sandbox`, `workflows` ..."""
    if not path:
        return "?"
    if path.startswith("<"):
        return "generated code"
    if "site-packages/" in path:
        parts = path.split("site-packages/", 1)[1].removesuffix(".py").split("/")
        if parts[0] == "temporalio":
            return ".".join(parts[:3])
        return parts[0]
    if path.startswith(str(ROOT)):
        top = Path(path).relative_to(ROOT).parts[0].removesuffix(".py")
        return top if top in _PROJECT else f"project {top}"
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
        return "stdlib " + rest.split("/")[0].removesuffix(".py")
    return "other"


def _is_idle(frame: Any) -> bool:
    return frame.function in ("select", "poll", "epoll") and "selectors" in (frame.file_path or "")


def summarize(prefix: Path, title: str, top: int = 15) -> dict[str, Any]:
    from pyinstrument.session import Session

    session = Session.load(str(prefix.with_suffix(".pyisession")))
    root = session.root_frame()
    assert root is not None, "empty profile"
    self_by_function: Counter[str] = Counter()
    self_by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()

    def walk(frame: Any, owners: frozenset[str], caller: str) -> float:
        """Accumulates; returns the idle time inside `frame`. `caller`: the package of the nearest real caller."""
        if _is_idle(frame):
            return float(frame.time)
        owner: str | None = None
        if not frame.is_synthetic:
            # Built-ins, frozen importlib and exec'd code belong to whoever called them.
            owner = caller if (frame.file_path or "<").startswith("<") else module_of(frame.file_path)
        entered = owner is not None and owner not in owners
        inner = owners | {owner} if entered and owner is not None else owners
        idle = sum(walk(child, inner, owner or caller) for child in frame.children)
        # (A synthetic child, pyinstrument's "self time" leaf, is part of its parent's total_self_time.)
        own = 0.0 if frame.is_synthetic else frame.total_self_time
        if own > 0 and owner is not None:
            self_by_package[owner] += own
            self_by_function[f"{frame.function} ({frame.code_position_short() or '?'})"] += own
        if entered and owner is not None and owner not in _WRAPPERS:
            inclusive[owner] += frame.time - idle  # under this package's calls, once per stack
        return idle

    idle = walk(root, frozenset(), "generated code")
    text = prefix.with_suffix(".txt").read_text(encoding="utf-8") if prefix.with_suffix(".txt").exists() else ""
    return {
        "title": title,
        "sampled": root.time,
        "idle": idle,
        "busy": root.time - idle,
        "self": self_by_function.most_common(top),
        "self_packages": self_by_package.most_common(top),
        "inclusive": inclusive.most_common(top),
        "text": text,
        "html": str(prefix.with_suffix(".html")),
    }
