"""The monthly report's context for its PDF (A6, C12): the same template, with the long listings capped.

WeasyPrint is slow on long tables: a plain 2,000-row table takes ~6.5 s on this project's 2-core machine,
and the report's request rows (seven columns, several lines a cell) cost ~35 ms each, so a month of
50,000 requests cannot be printed row by row. The PDF lists the first `PDF_REQUEST_ROWS`
requests (open first, then pending, then closed, as the HTML orders them) and the first `PDF_BREACH_ROWS`
breaches, and says that the full list is in the attached CSV. The HTML document and the CSV keep every row.
Only a report over the cap gets this second rendering (`data["print_html"]`, read by storage/pdfs.py); a
shorter one is printed from its HTML as filed.
"""

from __future__ import annotations

from typing import Any

from activities.report_data import REQUEST_STATES

PDF_REQUEST_ROWS = 100
PDF_BREACH_ROWS = 50
PDF_DISPATCH_ROWS = 50  # a dispatch is one of the month's requests: a busy month has hundreds


def capped_print_context(context: dict[str, Any], csv_filename: str, cap: int = PDF_REQUEST_ROWS,
                         breach_cap: int = PDF_BREACH_ROWS, dispatch_cap: int = PDF_DISPATCH_ROWS,
                         ) -> dict[str, Any] | None:
    """The monthly report's render context with its request tables cut to `cap` rows in all, its breach
    table to `breach_cap` and its dispatch table to `dispatch_cap`, and `print_cap` saying so; None when
    everything fits (the filed HTML is printed)."""
    sections: dict[str, Any] = context["sections"]
    requests: dict[str, Any] = sections["requests"]
    listed = {state: len(requests.get(state) or []) for state in REQUEST_STATES}
    breaches: list[dict[str, Any]] = requests.get("sla_breaches") or []
    dispatches: list[dict[str, Any]] = (sections.get("dispatches") or {}).get("entries") or []
    total = sum(listed.values())
    if total <= cap and len(breaches) <= breach_cap and len(dispatches) <= dispatch_cap:
        return None
    left = cap
    capped: dict[str, Any] = dict(requests)
    for state in REQUEST_STATES:
        rows = requests.get(state) or []
        capped[state] = rows[:left]
        left -= len(capped[state])
    capped["sla_breaches"] = breaches[:breach_cap]
    capped_sections = sections | {"requests": capped}
    if dispatches:
        capped_sections["dispatches"] = sections["dispatches"] | {"entries": dispatches[:dispatch_cap]}
    return context | {
        "sections": capped_sections,
        "print_cap": {"shown": min(total, cap), "total": total, "listed": listed, "csv": csv_filename,
                      "breaches": len(breaches), "breaches_shown": len(capped["sla_breaches"]),
                      "dispatches": len(dispatches), "dispatches_shown": min(len(dispatches), dispatch_cap)},
    }
