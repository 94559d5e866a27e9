"""Charts of the monthly follow-up report (D7, A6), drawn with matplotlib's Agg backend.

One drawing, two outputs: an SVG element for the workspace HTML document (text stays
text, `svg.fonttype = none`, so the numbers are searchable and tests can read them) and a
PNG for mail, since Gmail and Outlook do not render inline SVG. Only the object API is
used (no pyplot): no global figure registry, nothing kept between calls.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

# rule A6 states, in the report's colours (open blue, pending amber, closed green).
STATE_COLOURS = {"open": "#1565c0", "pending": "#f0b429", "closed": "#2f7d32"}
STATE_LABELS = {"open": "Open", "pending": "Pending (waiting for you)", "closed": "Closed"}
_FALLBACK_COLOURS = ("#52606d", "#9fb3c8", "#ab091e")
_RC: dict[Any, Any] = {
    "svg.fonttype": "none",  # <text> elements, not glyph paths
    "svg.hashsalt": "techconnect",  # stable element ids: the same figures give the same SVG
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "Liberation Sans"],
    "font.size": 10,
}
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)


@dataclass(frozen=True)
class Chart:
    svg: str  # one <svg> element, ready to inline in HTML
    png: bytes
    alt: str  # the same figures in words, for screen readers and mail clients that block images


@cache
def _matplotlib() -> ModuleType:
    """matplotlib, imported at the first chart: with numpy and Pillow it is 50 MiB of every worker's memory
    (issue 16), and a worker holding programmes draws a chart only at a month's end."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker
    import matplotlib.figure
    import matplotlib.ticker

    return matplotlib


def value_label_id(kind: str, state: str) -> str:
    """Element id of the value printed over one bar (tests read the SVG by it)."""
    return f"value-{kind}-{state}"


def requests_by_kind_and_state(
    matrix: dict[str, dict[str, int]], kinds: Sequence[str], states: Sequence[str], title: str
) -> Chart:
    """Rule A6: grouped bars, one group per request kind, one bar per state, each labelled with its value."""
    matplotlib = _matplotlib()
    with matplotlib.rc_context(_RC):
        fig = matplotlib.figure.Figure(figsize=(6.4, 3.5), layout="constrained")  # ~ the 544 px column of a mail
        ax = fig.add_subplot()
        width = 0.8 / max(len(states), 1)
        top = max((matrix.get(k, {}).get(s, 0) for k in kinds for s in states), default=0)
        for i, state in enumerate(states):
            values = [matrix.get(k, {}).get(state, 0) for k in kinds]
            xs = [j + (i - (len(states) - 1) / 2) * width for j in range(len(kinds))]
            colour = STATE_COLOURS.get(state, _FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)])
            bars = ax.bar(xs, values, width * 0.92, label=STATE_LABELS.get(state, state.capitalize()), color=colour)
            for kind, text in zip(kinds, ax.bar_label(bars, padding=2, fontsize=10, color="#1f2933"), strict=True):
                text.set_gid(value_label_id(kind, state))
        ax.set_xticks(range(len(kinds)), [k.capitalize() for k in kinds])
        ax.set_ylim(0, max(top, 1) * 1.18)  # room for the labels over the highest bar
        ax.set_ylabel("Requests")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # requests come whole
        ax.set_title(title, loc="left", fontsize=11, color="#0b2a4a", pad=22)
        ax.spines[["top", "right"]].set_visible(False)
        ax.yaxis.grid(True, color="#e4e8ee")
        ax.set_axisbelow(True)
        # One row between the title and the plot: never over a bar, whichever kind is tallest.
        ax.legend(frameon=False, fontsize=9, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=len(states),
                  borderaxespad=0.2, handlelength=1.2)

        svg_buf = io.StringIO()
        fig.savefig(svg_buf, format="svg", metadata={"Date": None})
        png_buf = io.BytesIO()
        fig.savefig(png_buf, format="png", dpi=150, metadata={"Software": None})
    svg = _PROLOG.sub("", svg_buf.getvalue(), count=1)
    # Scales down with the page (the drawing keeps its viewBox); labelled for assistive technology.
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{title}" style="max-width:100%; height:auto;" ', 1)
    alt = "; ".join(
        f"{k}: " + ", ".join(f"{matrix.get(k, {}).get(s, 0)} {s}" for s in states) for k in kinds
    )
    return Chart(svg=svg, png=png_buf.getvalue(), alt=f"{title}. {alt}.")
