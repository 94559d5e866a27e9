"""Which tests prove which rule: the `rule` markers of tests/, read without running them.

A test proves a rule when it carries the marker (``@pytest.mark.rule("C12")``, several ids
allowed, on the function, on its `Test*` class, in a module's `pytestmark`, or in the
`marks=` of a `pytest.param`) and it asserts something about behaviour. A marked test whose
body asserts nothing, or whose assertions compare only literals and constants with each
other, is reported as trivial and does not count (`Analyser.proves`).

docs/rules.md states every rule; under each one, between `<!-- proved-by:C12 -->` and
`<!-- /proved-by -->`, the list of the tests that prove it is generated from the markers. Its
table "Steps and the rules they serve", between `<!-- steps -->` and `<!-- /steps -->`, is
generated from the step registry (`domain.steps.STEPS`):

    python -m tests.rule_table            # rule -> tests, rules without a test, trivial or unreadable markers
    python -m tests.rule_table --write    # rewrite the "Proved by" lists and the steps table of docs/rules.md
    python -m tests.rule_table --check    # exit 1 with a diff when docs/rules.md is out of date

tests/test_rule_coverage.py runs the same checks in the suite. The work is split in modules:
tests/rule_markers.py reads the markers (`scan_tests`), tests/rule_asserts.py judges whether a
marked test asserts, tests/rule_parse.py parses a file and finds its constants; this module
states docs/rules.md's generated parts and is the command line.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable, Mapping

from domain.steps import STEPS, StepSpec
from tests.rule_markers import REPO, Scan, scan_tests

RULES_MD = REPO / "docs" / "rules.md"
WRITE_COMMAND = "python -m tests.rule_table --write"

# The handbook's 37 rules, in the order docs/rules.md states them.
EXPECTED_RULES: tuple[str, ...] = (
    "E1", "E2", *(f"C{i}" for i in range(1, 17)), *(f"D{i}" for i in range(1, 11)), *(f"A{i}" for i in range(1, 10)),
)

RULE_HEADING = re.compile(r"^## ([A-Z]\d+)\b", re.MULTILINE)
PROVED_BY = re.compile(r"(<!-- proved-by:([A-Z]\d+) -->\n)(.*?)(<!-- /proved-by -->)", re.DOTALL)
NONE_YET = "- none yet\n"
STEPS_BLOCK = re.compile(r"(<!-- steps -->\n)(.*?)(<!-- /steps -->)", re.DOTALL)


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


def steps_table(steps: Iterable[StepSpec] = STEPS) -> str:
    """The registry as a Markdown table: one row per Update, in registry order."""
    rows = ["| step | workflow | title | rules | waits for |\n", "|---|---|---|---|---|\n"]
    for s in steps:
        waits = ", ".join(f"`{w}`" for w in s.waits_for) or "–"
        rows.append(f"| `{s.name}` | {s.workflow.value} | {s.title} | {', '.join(s.rules)} | {waits} |\n")
    return "".join(rows)


def render_steps(text: str, steps: Iterable[StepSpec] = STEPS) -> str:
    """docs/rules.md with its steps table rewritten from the registry (unchanged when it has none)."""
    table = steps_table(steps)
    return STEPS_BLOCK.sub(lambda m: m.group(1) + table + m.group(3), text)



# ---------------------------------------------------------------------------- entry points
def expected_rules_md(scan: Scan, text: str) -> str:
    return render_steps(render(text, scan.proofs()))


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
    group.add_argument("--write", action="store_true", help="rewrite the generated parts of docs/rules.md")
    group.add_argument("--check", action="store_true", help="exit 1 with a diff when docs/rules.md is out of date")
    args = parser.parse_args(argv)
    text = RULES_MD.read_text(encoding="utf-8")
    if not STEPS_BLOCK.search(text):
        print("docs/rules.md has no '<!-- steps -->' ... '<!-- /steps -->' block for the steps table")
        return 1
    scan = scan_tests()
    expected = expected_rules_md(scan, text)
    if args.write:
        if expected != text:
            RULES_MD.write_text(expected, encoding="utf-8")
            print(f"docs/rules.md: Proved by lists rewritten from the markers ({len(scan.marked)} marked tests), "
                  f"steps table from the registry ({len(STEPS)} steps)")
        else:
            print("docs/rules.md: already up to date")
        print(report(scan, rules_in(text)))
        return 0
    if args.check:
        if expected != text:
            sys.stdout.write(diff(text, expected))
            print(f"\ndocs/rules.md is out of date with the rule markers or the step registry: run {WRITE_COMMAND}")
            return 1
        print("docs/rules.md matches the rule markers and the step registry")
        return 0
    print(report(scan, rules_in(text)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
