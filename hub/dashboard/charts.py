"""Figures drawn on the server as inline SVG: the page loads nothing and runs no script.

Every label passes through ``html.escape``; the numbers are formatted here.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 360, 150
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 30, 34, 10
BAR = "#3b6ea8"
EMPTY = '<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="40" role="img"><text x="4" y="24">{text}</text></svg>'


def bar_chart(bars: list[tuple[str, float]], title: str, unit: str = "") -> Markup:
    """Vertical bars with a label under each (labels thinned out when crowded) and the count above."""
    if not bars or not any(value for _, value in bars):
        return Markup(EMPTY.format(w=WIDTH, text=escape(f"{title}: nothing yet")))
    top = max(value for _, value in bars)
    plot_width = WIDTH - MARGIN_LEFT - 6
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    step = plot_width / len(bars)
    every = max(1, round(len(bars) / 8))
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{MARGIN_LEFT}" y1="{HEIGHT - MARGIN_BOTTOM}" x2="{WIDTH - 6}" y2="{HEIGHT - MARGIN_BOTTOM}" '
             'stroke="#888"/>',
             f'<text x="2" y="{MARGIN_TOP + 8}" font-size="10">{top:g}</text>']
    for index, (label, value) in enumerate(bars):
        height = plot_height * value / top
        x = MARGIN_LEFT + index * step + step * 0.1
        y = HEIGHT - MARGIN_BOTTOM - height
        tip = escape(f"{label}: {value:g}{unit}")
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{height:.1f}" '
                     f'fill="{BAR}"><title>{tip}</title></rect>')
        if value:
            parts.append(f'<text x="{x + step * 0.4:.1f}" y="{y - 2:.1f}" font-size="9" text-anchor="middle">'
                         f"{value:g}</text>")
        if index % every == 0:
            parts.append(f'<text x="{x + step * 0.4:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 12}" font-size="9" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def score_histogram(scores: list[float], max_score: float | None, bins: int = 10) -> list[tuple[str, float]]:
    """Counted scores in ``bins`` equal bins of the maximum (the last bin holds full marks)."""
    if not scores:
        return []
    top = max_score or max(scores) or 1.0
    counts = [0] * bins
    for score in scores:
        counts[min(bins - 1, max(0, int(score / top * bins)))] += 1
    width = top / bins
    return [(f"{index * width:g}", float(count)) for index, count in enumerate(counts)]
