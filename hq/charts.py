"""A tiny server-side SVG chart renderer for the ops dashboard: bars and lines with axes and labels.

The machines have no internet and the page must work without JavaScript, so charts are plain SVG
markup rendered here and inlined in the page: no CDN, no script. Every bar and point carries a
`<title>` with its value, which browsers show on hover and screen readers read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

#: Colours for common series names; others take the palette in order.
COLORS: dict[str, str] = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#9e9e9e",
    "rejected": "#ef6c00",
    "skipped": "#9e9e9e",
    "queued": "#1565c0",
    "waiting": "#1565c0",
    "deferred": "#7e57c2",
    "running": "#2e7d32",
    "awaiting_approval": "#ef6c00",
    "p50": "#1565c0",
    "p95": "#ef6c00",
    "p99": "#c62828",
}
PALETTE = ("#1565c0", "#2e7d32", "#ef6c00", "#c62828", "#7e57c2", "#00838f", "#6d4c41")

#: The drawing's size in SVG units. The dashboard draws a chart at about this many CSS pixels (at
#: least 0.95 of it in its narrowest panel, at most 1.25 times it), so the 12-unit text renders at
#: 11.4 px or more: the width and the font size are chosen together; change them together.
WIDTH, PLOT_H = 400, 130
LEFT, RIGHT, TOP = 46, 10, 12
FONT_PX = 12
#: Room under the plot for the x labels, and the height of one legend row.
X_LABELS_H, LEGEND_ROW_H = 22, 17
#: At most this many x labels (an "HH:MM" label is about 32 units wide at 12 units).
MAX_X_LABELS = 6
#: Width of a legend character, an estimate for sans-serif at 12 units (DejaVu Sans is about 7).
CHAR_W = 7.2
MAX_SCALE = 1.25


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `maximum` (steps of 1, 2 or 5 × 10^k)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = step * math.ceil(maximum / step)
    return [round(i * step, 10) for i in range(int(round(top / step)) + 1)]


def fmt(value: float) -> str:
    """Short number: 1200 → 1.2k, 0.25 → 0.25."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if abs(value) >= 1000:
        return f"{value / 1000:.3g}k"
    return f"{value:.3g}"


def _color(name: str, index: int) -> str:
    return COLORS.get(name, PALETTE[index % len(PALETTE)])


class _Frame:
    """Axes, grid and labels shared by both kinds of chart."""

    def __init__(self, labels: Sequence[str], maximum: float, y_label: str) -> None:
        self.labels = list(labels)
        self.ticks = nice_ticks(maximum)
        self.top_value = self.ticks[-1] or 1.0
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = PLOT_H
        self.y_label = y_label

    def y(self, value: float) -> float:
        return TOP + self.plot_h * (1 - value / self.top_value)

    def slot(self, index: int) -> tuple[float, float]:
        """Left edge and width of category `index`."""
        width = self.plot_w / max(len(self.labels), 1)
        return LEFT + index * width, width

    def axes(self) -> list[str]:
        parts = []
        for tick in self.ticks:
            y = self.y(tick)
            parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>')
            parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(tick))}</text>')
        base = self.y(0)
        parts.append(f'<line x1="{LEFT}" y1="{base:.1f}" x2="{WIDTH - RIGHT}" y2="{base:.1f}" class="axis"/>')
        parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base:.1f}" class="axis"/>')
        every = max(1, math.ceil(len(self.labels) / MAX_X_LABELS))
        for i, label in enumerate(self.labels):
            if i % every:
                continue
            x, w = self.slot(i)
            parts.append(f'<text x="{x + w / 2:.1f}" y="{base + 15:.1f}" text-anchor="middle">{escape(label)}</text>')
        if self.y_label:
            parts.append(
                f'<text x="12" y="{TOP + self.plot_h / 2:.1f}" text-anchor="middle" '
                f'transform="rotate(-90 12 {TOP + self.plot_h / 2:.1f})">{escape(self.y_label)}</text>'
            )
        return parts


def _legend(names: Sequence[str]) -> tuple[list[str], float]:
    """The legend under the x labels, wrapped onto more rows when it is wider than the chart; and the
    chart's height with it."""
    parts, x = [], float(LEFT)
    y = TOP + PLOT_H + X_LABELS_H + LEGEND_ROW_H - 4
    for i, name in enumerate(names):
        width = 14 + CHAR_W * len(name)
        if x > LEFT and x + width > WIDTH - RIGHT:
            x, y = float(LEFT), y + LEGEND_ROW_H
        parts.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="10" height="10" fill="{_color(name, i)}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y:.1f}">{escape(name)}</text>')
        x += width + 12
    return parts, y + 7


def _empty(body: list[str], text: str) -> None:
    body.append(
        f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2:.1f}" y="{TOP + PLOT_H / 2:.1f}" '
        f'text-anchor="middle" class="empty">{escape(text)}</text>'
    )


def _svg(title: str, body: list[str], height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" width="100%" '
        f'style="max-width:{WIDTH * MAX_SCALE:.0f}px;height:auto;display:block" '
        f'role="img" aria-label="{escape(title)}" class="hq-chart">'
        f"<style>.hq-chart text{{font:{FONT_PX}px sans-serif;fill:#444}}.hq-chart .grid{{stroke:#e3e3e3}}"
        ".hq-chart .axis{stroke:#888}.hq-chart .empty{fill:#777}</style>"
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def bar_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    y_label: str = "",
    stacked: bool = True,
    empty: str = "No data",
) -> str:
    """Bars per label, one colour per series, stacked (or side by side with `stacked=False`); `empty`
    is written across a chart with nothing to draw."""
    names = list(series)
    if stacked:
        maximum = max((sum(series[n][i] or 0 for n in names) for i in range(len(labels))), default=0)
    else:
        maximum = max((v or 0 for n in names for v in series[n]), default=0)
    frame = _Frame(labels, maximum, y_label)
    body = frame.axes()
    for i, label in enumerate(labels):
        x, w = frame.slot(i)
        gap = min(w * 0.15, 6)
        bottom = 0.0
        for j, name in enumerate(names):
            value = series[name][i] or 0
            if stacked:
                bx, bw, low, high = x + gap / 2, w - gap, bottom, bottom + value
                bottom = high
            else:
                bw = (w - gap) / len(names)
                bx, low, high = x + gap / 2 + j * bw, 0.0, value
            if value <= 0:
                continue
            y0, y1 = frame.y(high), frame.y(low)
            body.append(
                f'<rect x="{bx:.1f}" y="{y0:.1f}" width="{max(bw, 0.5):.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                f'fill="{_color(name, j)}"><title>{escape(f"{label} {name}: {fmt(value)}")}</title></rect>'
            )
    if maximum <= 0:
        _empty(body, empty)
    legend, height = _legend(names)
    return _svg(title, body + legend, height)


def line_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    y_label: str = "",
    empty: str = "No data",
) -> str:
    """One line per series through its consecutive points; a missing value (None) breaks the line, and
    a point with no neighbour is drawn as a dot. Every point has a hover target with its value."""
    names = list(series)
    maximum = max((v for n in names for v in series[n] if v is not None), default=0)
    frame = _Frame(labels, maximum, y_label)
    body = frame.axes()
    targets = []
    for j, name in enumerate(names):
        color = _color(name, j)
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(series[name]):
            if value is None:
                runs.append([])
                continue
            x, w = frame.slot(i)
            cx, cy = x + w / 2, frame.y(value)
            runs[-1].append((cx, cy))
            targets.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="transparent">'
                f"<title>{escape(f'{labels[i]} {name}: {fmt(value)}')}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                body.append(
                    f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2" '
                    'stroke-linejoin="round"/>'
                )
            elif run:
                body.append(f'<circle cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="3" fill="{color}" class="lone"/>')
    if not any(v is not None for n in names for v in series[n]):
        _empty(body, empty)
    legend, height = _legend(names)
    return _svg(title, body + targets + legend, height)
