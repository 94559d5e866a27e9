"""The project documents itself: a short README, links that resolve, nothing outside the repository.

Fails when README.md is over 200 lines, when a relative link in README.md or docs/*.md does not
resolve to a file of the repository (tracked, or new and not ignored), or when a file of the
repository mentions the sibling folder the documents once lived in.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 200
# Spelled in two pieces so that this file does not mention it.
OUTSIDE = ".." + "/shared"

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_HTML = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def repository_files() -> set[str]:
    """Files a clone has once the work in progress is committed: tracked, or new and not ignored."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    return {name for name in out.decode().split("\0") if name and (ROOT / name).is_file()}


def link_targets(markdown: str) -> list[str]:
    """Every link target of a Markdown text, outside code blocks and code spans."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    return [m.group(1) for rx in (_INLINE, _REFERENCE, _HTML) for m in rx.finditer(text)]


def broken_links(markdown: str, source: str, files: set[str]) -> list[str]:
    """Relative links of `markdown` (the file `source`, relative to ROOT) that name no repository file."""
    known_dirs = {str(Path(f).parent) for f in files} | {
        str(p) for f in files for p in Path(f).parents if str(p) != "."}
    broken = []
    for target in link_targets(markdown):
        if _EXTERNAL.match(target) or target.startswith("#"):
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        resolved = (ROOT / Path(source).parent / path).resolve()
        try:
            relative = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            broken.append(f"{source}: {target} points outside the repository")
            continue
        if relative not in files and relative not in known_dirs:
            broken.append(f"{source}: {target} -> {relative} is not a file of the repository")
    return broken


def readme_problems(readme: str, files: set[str]) -> list[str]:
    """What is wrong with a README text: its length, its links, a mention of the outside folder."""
    problems = []
    lines = len(readme.splitlines())
    if lines > README_MAX_LINES:
        problems.append(f"README.md has {lines} lines, more than {README_MAX_LINES}")
    problems += broken_links(readme, "README.md", files)
    if OUTSIDE in readme:
        problems.append(f"README.md mentions {OUTSIDE}")
    return problems


def files_mentioning_outside(files: set[str]) -> list[str]:
    needle = OUTSIDE.encode()
    return sorted(name for name in files if needle in (ROOT / name).read_bytes())


@pytest.fixture(scope="module")
def files() -> set[str]:
    return repository_files()


def test_readme_is_short_and_its_links_resolve(files: set[str]) -> None:
    problems = readme_problems((ROOT / "README.md").read_text(), files)
    assert not problems, "\n".join(problems)


def test_links_of_docs_pages_resolve(files: set[str]) -> None:
    pages = sorted(name for name in files if name.startswith("docs/") and name.endswith(".md"))
    assert pages, "no docs/*.md page found"
    broken = [b for page in pages for b in broken_links((ROOT / page).read_text(), page, files)]
    assert not broken, "\n".join(broken)


def test_no_file_of_the_repository_points_outside_it(files: set[str]) -> None:
    mentioning = files_mentioning_outside(files)
    assert not mentioning, f"these files mention {OUTSIDE}: {', '.join(mentioning)}"


def test_the_checks_can_fail(files: set[str]) -> None:
    """The checker sees each fault: a long README, a dead link, an image beside the wrong folder,
    a mention of the outside folder; links in code, external links and anchors are not checked."""
    long = "line\n" * (README_MAX_LINES + 1)
    assert readme_problems(long, files) == [f"README.md has {README_MAX_LINES + 1} lines, more than 200"]
    text = ("See [the rules](docs/no-such-page.md#c1), ![shot](portal-inbox.png) and "
            f"`{OUTSIDE}/notes.md` and [design](docs/design.md), [web](https://temporal.io), [top](#top), "
            "`[in code](missing.md)`\n\n```\n[in a block](missing-too.md)\n```\n")
    problems = readme_problems(text, files)
    assert problems == [
        "README.md: docs/no-such-page.md#c1 -> docs/no-such-page.md is not a file of the repository",
        "README.md: portal-inbox.png -> portal-inbox.png is not a file of the repository",
        f"README.md mentions {OUTSIDE}",
    ]
    # The same image link resolves from a page in docs/, and a link may climb back to the root.
    assert broken_links("![shot](portal-inbox.png) [bench](../bench/results.md)", "docs/x.md", files) == []
    assert broken_links("[out](../../etc/passwd)", "docs/x.md", files) == [
        "docs/x.md: ../../etc/passwd points outside the repository"]
