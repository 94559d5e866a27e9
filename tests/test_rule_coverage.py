"""Rule coverage that cannot be gamed.

docs/rules.md states the handbook's 37 rules, one `## C12 ...` heading each. A test proves a
rule when it carries its marker, `@pytest.mark.rule("C12")`, and asserts something about
behaviour (tests/rule_table.py reads the markers and judges the assertions without running
anything). This file fails when a rule has no such test, when a marked test asserts nothing
but constants, when a marker names a rule that is not in docs/rules.md or cannot be read
exactly, when docs/rules.md's "Proved by" lists differ from the markers, and when code or
tests cite a rule that does not exist. It also tests the checker on small snippets, so that
it cannot pass everything without anyone noticing.
"""

from __future__ import annotations

import functools
import re
import textwrap
from pathlib import Path

import pytest

from tests.rule_markers import REPO, Scan, scan_sources, scan_tests
from tests.rule_table import (
    EXPECTED_RULES,
    NONE_YET,
    RULES_MD,
    WRITE_COMMAND,
    diff,
    expected_rules_md,
    proved_by_blocks,
    render,
    rules_in,
)

HERE = {Path(__file__).resolve(), (REPO / "tests" / "rule_table.py").resolve()}


@functools.cache
def rules_text() -> str:
    return RULES_MD.read_text(encoding="utf-8")


@functools.cache
def suite() -> Scan:
    return scan_tests()


# ---- docs/rules.md ------------------------------------------------------------------------------
def test_rules_md_states_each_of_the_37_rules_once() -> None:
    ids = rules_in(rules_text())
    twice = sorted({i for i in ids if ids.count(i) > 1})
    assert not twice, f"docs/rules.md states these rules more than once: {twice}"
    missing = [r for r in EXPECTED_RULES if r not in ids]
    extra = [r for r in ids if r not in EXPECTED_RULES]
    assert not missing and not extra, f"docs/rules.md: rules missing {missing}, unexpected {extra}"
    assert len(ids) == 37
    assert proved_by_blocks(rules_text()) == ids, (
        "each rule of docs/rules.md needs one '<!-- proved-by:ID -->' block, under its own heading")


def test_rules_md_stands_on_its_own() -> None:
    """The project's statement of the rules points at nothing outside the repository."""
    text = rules_text()
    outside = re.findall(r"\.\./shared|DOMAIN\.md|DESIGN\.md", text)
    assert not outside, f"docs/rules.md points outside the repository: {outside}"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+://", target):
            assert (RULES_MD.parent / target).is_file(), f"docs/rules.md links to {target}, not in the repository"


# ---- the markers in tests/ --------------------------------------------------------------------
def test_every_rule_has_a_marked_test_that_asserts_behaviour() -> None:
    proofs = suite().proofs()
    missing = [r for r in rules_in(rules_text()) if r not in proofs]
    trivial = {r for t in suite().trivial() for r in t.rules}
    assert not missing, (
        f"rules without a test that carries @pytest.mark.rule(...) and asserts behaviour: {missing}"
        + (f" (some have only trivial marked tests: {sorted(trivial & set(missing))})" if trivial & set(missing)
           else ""))


def test_marked_tests_assert_more_than_constants() -> None:
    trivial = [f"{t.nodeid} (marked {', '.join(t.rules)}): {t.why}" for t in suite().trivial()]
    assert not trivial, "a rule marker on a test that proves nothing:\n" + "\n".join(trivial)


def test_markers_name_only_rules_that_exist() -> None:
    unknown = suite().unknown_rules(rules_in(rules_text()))
    assert not unknown, f"markers naming rules that docs/rules.md does not state: {unknown}"


def test_markers_are_read_exactly() -> None:
    assert not suite().problems, "\n".join(suite().problems)


def test_rules_md_proved_by_lists_match_the_markers() -> None:
    text = rules_text()
    expected = expected_rules_md(suite(), text)
    if expected != text:  # pytest.fail: the diff below says it all, pytest's own diff of two pages would not
        pytest.fail(f"docs/rules.md is out of date with the rule markers: run {WRITE_COMMAND}\n"
                    + diff(text, expected), pytrace=False)


# ---- citations ---------------------------------------------------------------------------------
RULE_ID = r"[ECDA]\d{1,2}"
ID_LIST = rf"{RULE_ID}(?:\s*(?:,|/|\band\b|–|-)\s*{RULE_ID})*"
CITATIONS = [re.compile(rf"\brules?[\s_]+({ID_LIST})", re.IGNORECASE), re.compile(rf"\(({ID_LIST})\)")]
CITING = ["tests", "domain", "workflows", "activities", "storage", "starter", "cli", "config", "devstack", "telemetry",
          "portal", "templates", "docs"]


def citations(text: str) -> set[str]:
    return {i.upper() for pattern in CITATIONS for m in pattern.finditer(text)
            for i in re.findall(RULE_ID, m.group(1), re.IGNORECASE)}


def test_code_tests_and_docs_cite_only_rules_that_exist() -> None:
    """A typo (`rule C17`, `(C4, C71)`) would make code, a test or a page look like it applies a rule that is
    not there."""
    known = set(rules_in(rules_text()))
    paths = [REPO / "README.md"] + [p for folder in CITING for p in sorted((REPO / folder).rglob("*"))]
    unknown = {(path.relative_to(REPO).as_posix(), i)
               for path in paths if path.suffix in (".py", ".j2", ".md") and path.resolve() not in HERE
               for i in citations(path.read_text(encoding="utf-8")) if i not in known}
    assert not unknown, sorted(unknown)


def test_citations_are_found_in_their_usual_forms() -> None:
    text = "# rule C16\nrules C1/C3 and (A4, C12); rule_c7; (D1-D3)\nraise ValueError('rule C17: x')"
    assert citations(text) == {"C16", "C1", "C3", "A4", "C12", "C7", "D1", "D3", "C17"}


# ---- the checker itself, on snippets -------------------------------------------------------------
def marked_test(source: str, **others: str) -> Scan:
    files = {"tests/test_snippet.py": textwrap.dedent(source)}
    files |= {path: textwrap.dedent(text) for path, text in others.items()}
    return scan_sources(files)


def only_test(scan: Scan) -> tuple[bool, str]:
    assert not scan.problems, scan.problems
    assert [t.nodeid for t in scan.marked] == ["tests/test_snippet.py::test_x"]
    return scan.marked[0].proves, scan.marked[0].why


TRIVIAL = {
    "assert True": """
        import pytest
        @pytest.mark.rule("C6")
        def test_x():
            assert True
    """,
    "a literal compared with itself": """
        import pytest
        @pytest.mark.rule("C6")
        def test_x():
            assert "C6" == "C6"
    """,
    "a module constant": """
        import pytest
        RULE = "C6"
        @pytest.mark.rule("C6")
        def test_x():
            assert RULE == "C6"
    """,
    "an imported mapping": """
        import pytest
        from domain.step_inputs import EXTRA_RULES, BillableExtraKind
        @pytest.mark.rule("C6")
        def test_x():
            assert EXTRA_RULES[BillableExtraKind.optional_coverage] == "C6"
    """,
    "the length of a constant table": """
        import pytest
        from domain.findings import CHECKS
        @pytest.mark.rule("A8")
        def test_x():
            assert len(CHECKS) == 18 and sorted(c for c, _ in CHECKS)[0].startswith("CFG")
    """,
    "what the test wrote itself": """
        import pytest
        @pytest.mark.rule("E2")
        def test_x():
            recorded = {"handbook_version": "rev. 2024"}
            version = recorded["handbook_version"]
            assert version == "rev. 2024"
    """,
    "a loop over constants": """
        import pytest
        @pytest.mark.rule("D1", "D2")
        def test_x():
            for rule in ("D1", "D2"):
                assert rule.startswith("D")
    """,
    "no assertion at all": """
        import pytest
        from domain.money import Money
        @pytest.mark.rule("C15")
        def test_x():
            Money(amount=1)
    """,
    "pytest.raises around a raise": """
        import pytest
        @pytest.mark.rule("C4")
        def test_x():
            with pytest.raises(ValueError):
                raise ValueError("rule C4")
    """,
    "pytest.fail behind a constant condition": """
        import pytest
        @pytest.mark.rule("C6")
        def test_x():
            if "C6" != "C6":
                pytest.fail("never")
    """,
    "a helper of the module given constants": """
        import pytest
        def same(a, b):
            assert a == b
        @pytest.mark.rule("C11")
        def test_x():
            same("C11", "C11")
    """,
    "an assert helper given constants": """
        import pytest
        from numpy.testing import assert_equal
        @pytest.mark.rule("A7")
        def test_x():
            assert_equal(7, 7)
    """,
}

REAL = {
    "the result of product code": """
        import pytest
        from domain.money import Money, price_increase_percent
        @pytest.mark.rule("C15")
        def test_x():
            assert price_increase_percent(Money(amount=100), Money(amount=110)) == 10
    """,
    "pytest.raises around product code": """
        import pytest
        from domain.money import Money, check_renewal_price
        @pytest.mark.rule("C15")
        def test_x():
            with pytest.raises(ValueError, match="C15"):
                check_renewal_price(Money(amount=100), Money(amount=111), 10)
    """,
    "a value from a fixture": """
        import pytest
        @pytest.mark.rule("C7")
        async def test_x(st):
            status = await st.status("acme")
            assert status.technical_lead.id == "tl-bob"
    """,
    "a local computed by product code": """
        import pytest
        from domain.enrolment import check_enrolment
        @pytest.mark.rule("C4")
        def test_x():
            violations = check_enrolment(None, None, None)
            expected = ["C4"]
            assert [v.rule for v in violations] == expected
    """,
    "a helper of the module given a result": """
        import pytest
        from domain.enrolment import check_enrolment
        def refused(violations, rule):
            assert {v.rule for v in violations} == {rule}
        @pytest.mark.rule("C4")
        def test_x():
            refused(check_enrolment(None, None, None), "C4")
    """,
    "a wait helper imported from tests/": """
        import pytest
        from tests.waits import wait_until
        @pytest.mark.rule("C12")
        async def test_x(handle):
            await wait_until(lambda: handle.breached, "the SLA breach")
    """,
    "a method of a fixture's object that waits": """
        import pytest
        @pytest.mark.rule("D7")
        async def test_x(st):
            await st.wait_mail("carol@acme.example", "report")
    """,
    "state a fake recorded": """
        import pytest
        from tests.fakes import run
        SEEN = []
        def fake(message):
            SEEN.append(message)
        @pytest.mark.rule("A1")
        def test_x():
            run(fake)
            assert SEEN == ["tl told"]
    """,
    "a Playwright expectation": """
        import pytest
        from playwright.async_api import expect
        @pytest.mark.rule("A9")
        async def test_x(page):
            await expect(page.locator("h1")).to_have_text("ACME workspace")
    """,
    "pytest.fail on a response": """
        import pytest
        @pytest.mark.rule("A9")
        def test_x(client):
            if client.get("/workspace/other").status_code != 404:
                pytest.fail("another customer's workspace answered")
    """,
    "a hypothesis argument": """
        import pytest
        from hypothesis import given, strategies as st
        from domain.calendar import add_months
        @pytest.mark.rule("C2")
        @given(st.dates())
        def test_x(day):
            assert add_months(day, 12).year == day.year + 1
    """,
    "a mock's assert method": """
        import pytest
        from tests.fakes import run
        @pytest.mark.rule("A1")
        def test_x(mocker):
            mail = mocker.Mock()
            run(mail)
            mail.assert_called_once_with("tl-alice@ot.example")
    """,
}

HELPERS = {
    "tests/waits.py": """
        import asyncio
        async def wait_until(condition, what, timeout=5.0):
            for _ in range(int(timeout * 10)):
                if condition():
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"{what} did not happen within {timeout} s")
    """,
    "tests/stack.py": """
        class Stack:
            async def wait_mail(self, to, subject):
                found = await self.sink.find(to, subject)
                if found is None:
                    raise TimeoutError(f"no mail {subject!r} to {to}")
                return found
    """,
    "tests/fakes.py": """
        def run(callback):
            callback("tl told")
    """,
}


@pytest.mark.parametrize("source", TRIVIAL.values(), ids=TRIVIAL.keys())
def test_checker_rejects_a_marked_test_that_proves_nothing(source: str) -> None:
    scan = marked_test(source, **HELPERS)
    proves, why = only_test(scan)
    assert not proves
    assert why.startswith(("its assertions compare only literals", "it asserts nothing"))
    assert scan.proofs() == {}, "a trivial test must not appear in the Proved by lists"


@pytest.mark.parametrize("source", REAL.values(), ids=REAL.keys())
def test_checker_accepts_a_test_that_asserts_behaviour(source: str) -> None:
    scan = marked_test(source, **HELPERS)
    proves, why = only_test(scan)
    assert proves, why
    assert list(scan.proofs().values()) == [["tests/test_snippet.py::test_x"]]


def test_checker_reads_markers_wherever_pytest_takes_them() -> None:
    scan = marked_test("""
        import pytest
        from pytest import mark
        pytestmark = [pytest.mark.slow, pytest.mark.rule("A4")]

        @pytest.mark.rule("C1", "C3")
        def test_several(st):
            assert st.ok

        @pytest.mark.parametrize("n", [1, pytest.param(6, marks=pytest.mark.rule("C4"))])
        def test_param(n, st):
            assert st.check(n)

        @mark.rule("C12")
        class TestClock:
            pytestmark = pytest.mark.rule("C5")

            @pytest.mark.rule("A1")
            def test_method(self, st):
                assert st.ok

        def test_unmarked_in_module(st):
            assert st.ok

        # @pytest.mark.rule("C99") in a comment is not a marker
        NOTE = '@pytest.mark.rule("C98") in a string is not one either'
    """)
    assert not scan.problems, scan.problems
    assert {t.nodeid: t.rules for t in scan.marked} == {
        "tests/test_snippet.py::test_several": ("A4", "C1", "C3"),
        "tests/test_snippet.py::test_param": ("A4", "C4"),
        "tests/test_snippet.py::TestClock::test_method": ("A4", "C12", "C5", "A1"),
        "tests/test_snippet.py::test_unmarked_in_module": ("A4",),
    }
    assert scan.unknown_rules(EXPECTED_RULES) == []


def test_checker_reports_markers_it_cannot_read_or_that_pytest_ignores() -> None:
    scan = marked_test("""
        import pytest
        RULES = ("C1", "C3")
        rule = pytest.mark.rule

        @rule("C7")
        def test_alias(st):
            assert st.ok

        @pytest.mark.rule(*RULES)
        def test_computed(st):
            assert st.ok

        @pytest.mark.rule("C4")
        def helper(st):
            assert st.ok

        @pytest.mark.rule("C17")
        def test_typo(st):
            assert st.ok
    """, **{"tests/harness.py": """
        import pytest
        @pytest.mark.rule("C2")
        def test_looks_like_a_test_but_is_in_a_helper_module(st):
            assert st.ok
    """})
    problems = "\n".join(scan.problems)
    assert "tests/test_snippet.py:4: `mark.rule` used in a way this scan does not read" in problems
    assert "tests/test_snippet.py:10: rule marker arguments must be literal strings" in problems
    assert "tests/test_snippet.py:14: rule marker on helper()" in problems
    assert "tests/harness.py:3: rule marker on test_looks_like_a_test_but_is_in_a_helper_module()" in problems
    assert len(scan.problems) == 4, problems
    assert scan.unknown_rules(EXPECTED_RULES) == ["tests/test_snippet.py::test_typo: rule 'C17'"]
    assert [t.nodeid for t in scan.marked] == ["tests/test_snippet.py::test_typo"]


def test_generated_lists_follow_the_markers() -> None:
    doc = ("# Rules\n\n## C1 Extra systems\n\n**Proved by:**\n<!-- proved-by:C1 -->\n- `tests/old.py::test_gone`\n"
           "<!-- /proved-by -->\n\n## C2 Term\n\n**Proved by:**\n<!-- proved-by:C2 -->\n"
           + NONE_YET + "<!-- /proved-by -->\n")
    scan = marked_test("""
        import pytest
        from domain.enrolment import check_enrolment
        @pytest.mark.rule("C2")
        def test_x():
            assert check_enrolment(None, None, None)
    """)
    written = render(doc, scan.proofs())
    assert rules_in(written) == ["C1", "C2"] and proved_by_blocks(written) == ["C1", "C2"]
    assert "<!-- proved-by:C1 -->\n" + NONE_YET + "<!-- /proved-by -->" in written
    assert "<!-- proved-by:C2 -->\n- `tests/test_snippet.py::test_x`\n<!-- /proved-by -->" in written
    assert render(written, scan.proofs()) == written
    assert "-- `tests/old.py::test_gone`" in diff(doc, written)
