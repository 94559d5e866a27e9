"""The fuzz tests' hypothesis strategies (tests/test_fuzz_inputs.py): JSON values, a valid payload mutated the
ways people and clients get it wrong, and a sequence of Updates drawn against the steps a workflow has open."""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from temporalio import workflow

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                print_blob=True)

# ---- strategies -------------------------------------------------------------------------------------
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10)
# Values that have broken parsers before: impossible dates, extreme years, naive and far-offset
# datetimes, huge and odd strings, numbers as strings, template syntax, NUL.
EDGE = st.sampled_from([
    "", " ", "0", "-1", "1e309", "NaN", "2027-02-30", "0001-01-01", "9999-12-31", "2025-01-06T10:00:00",
    "2025-01-06T10:00:00+14:00", "9999-12-31T23:59:59-12:00", "1970-01-01T00:00:00Z", "x" * 5000,
    "é🙂\u0000", "{{ 7 * 7 }}", "{% raw %}", "<script>alert(1)</script>", "-0.00", "99999999999999999999.999",
    "not-an-email", "a@b", "EUR", "XXX", "customer", "ot", "gts", "remote", "../../etc/passwd",
]) | st.integers(min_value=-(10**30), max_value=10**30) | st.dates().map(date.isoformat)


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """A variation of a valid value: each part kept, or (at a rate drawn per example) dropped,
    changed for an odd value of its kind, an edge value or random JSON; unknown fields added."""
    rate = draw(st.sampled_from([0, 0, 2, 10, 30, 70]))  # percent; 0 = the valid value itself

    def hit() -> bool:
        return draw(st.integers(0, 99)) < rate

    def walk(v: Any) -> Any:
        if hit():
            kind = draw(st.integers(0, 2))
            if kind == 0:
                return draw(JSON)
            if kind == 1:
                return draw(EDGE)
            if isinstance(v, bool):
                return not v
            if isinstance(v, int):
                return draw(st.integers(min_value=-(2**40), max_value=2**40))
            if isinstance(v, str):
                return draw(st.text(max_size=40))
        if isinstance(v, dict):
            out = {k: walk(x) for k, x in v.items() if not hit()}  # a field missing now and then
            if hit():
                out[draw(st.text(max_size=12))] = draw(JSON)  # an unknown field
            return out
        if isinstance(v, list):
            items = [walk(x) for x in v]
            return items * draw(st.integers(0, 3)) if hit() else items
        return v

    return walk(value)


def payloads(samples: dict[str, Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """(update name, payload): a mutated sample for any of the workflow's Updates."""
    return st.sampled_from(sorted(samples)).flatmap(lambda name: st.tuples(st.just(name), mutated(samples[name])))


def draw_next(data: st.DataObject, samples: dict[str, Any], open_now: list[str]) -> tuple[str, Any]:
    """Like `payloads`, but half the time for a step open now, so a run walks deeper than its first step.

    The draws have the same shape whatever the workflow's state (a payload for every Update, then
    an index): hypothesis requires it.
    """
    drafts = {name: data.draw(mutated(samples[name])) for name in sorted(samples)}
    prefer_open, index = data.draw(st.booleans()), data.draw(st.integers(0, 10**6))
    names = sorted(open_now) if prefer_open and open_now else sorted(samples)
    name = names[index % len(names)]
    return name, drafts[name]


def update_names(cls: type) -> set[str]:
    return {name for name in workflow._Definition.must_from_class(cls).updates if name}
