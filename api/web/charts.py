"""Charts drawn on the server as small inline SVG: no script, no extra request, and
still legible when the stylesheet has not arrived. Each chart carries a text
alternative (``aria-label``, and a ``<title>`` per mark for a pointer's tooltip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

# Readiness segments, in the order they are drawn (and the legend reads).
PALETTE = {
    "by_deadline": "#1b7f4c",
    "late": "#c98a00",
    "with_discrepancy": "#d9531e",
    "not_received": "#b3261e",
    "not_dispatched": "#98a2ad",
}
EMPTY = "#e3e7eb"
ACTIVITY = "#2a5d8f"
WIDTH = 1000  # viewBox units across; the SVG scales to its container


@dataclass(frozen=True)
class Segment:
    key: str
    label: str
    value: int


def stacked_bar(segments: Sequence[Segment], *, label: str) -> Markup:
    """One horizontal bar split in proportion to the segments' values (colours from
    ``PALETTE`` by key). An all-zero bar is drawn empty. ``label`` is its text alternative."""
    total = sum(s.value for s in segments)
    parts = [f'<rect width="{WIDTH}" height="10" fill="{EMPTY}"/>']
    x = 0.0
    for segment in segments:
        if not segment.value:
            continue
        width = WIDTH * segment.value / total
        parts.append(
            f'<rect x="{x:.2f}" width="{width:.2f}" height="10" fill="{PALETTE.get(segment.key, EMPTY)}">'
            f"<title>{escape(segment.label)}: {segment.value}</title></rect>"
        )
        x += width
    return Markup(
        f'<svg class="bar" viewBox="0 0 {WIDTH} 10" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}">{"".join(parts)}</svg>'
    )


def daily_bars(counts: Sequence[tuple[str, int]], *, label: str) -> Markup:
    """Vertical bars, one per calendar day from the first day in ``counts`` (ISO dates,
    ascending) to the last; days without a count are drawn as gaps. Empty input
    gives an empty chart."""
    by_day = dict(counts)
    if not by_day:
        return Markup(f'<svg class="activity" viewBox="0 0 {WIDTH} 100" role="img" aria-label="{escape(label)}"></svg>')
    first, last = date.fromisoformat(counts[0][0]), date.fromisoformat(counts[-1][0])
    days = [(first + timedelta(n)).isoformat() for n in range((last - first).days + 1)]
    peak = max(by_day.values())
    step = WIDTH / len(days)
    gap = min(step * 0.2, 2)
    parts = []
    for n, day in enumerate(days):
        value = by_day.get(day, 0)
        if not value:
            continue
        height = max(1.5, 96 * value / peak)
        parts.append(
            f'<rect x="{n * step + gap / 2:.2f}" y="{100 - height:.2f}" width="{step - gap:.2f}" '
            f'height="{height:.2f}" fill="{ACTIVITY}"><title>{day}: {value}</title></rect>'
        )
    parts.append(f'<line x1="0" y1="99.5" x2="{WIDTH}" y2="99.5" stroke="#9aa5b1" stroke-width="1"/>')
    return Markup(
        f'<svg class="activity" viewBox="0 0 {WIDTH} 100" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}">{"".join(parts)}</svg>'
    )
