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

WIDTH, HEIGHT = 720, 230
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 58


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
        self.plot_h = HEIGHT - TOP - BOTTOM
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
        every = max(1, math.ceil(len(self.labels) / 12))
        for i, label in enumerate(self.labels):
            if i % every:
                continue
            x, w = self.slot(i)
            parts.append(f'<text x="{x + w / 2:.1f}" y="{base + 14:.1f}" text-anchor="middle">{escape(label)}</text>')
        if self.y_label:
            parts.append(
                f'<text x="12" y="{TOP + self.plot_h / 2:.1f}" text-anchor="middle" '
                f'transform="rotate(-90 12 {TOP + self.plot_h / 2:.1f})">{escape(self.y_label)}</text>'
            )
        return parts


def _legend(names: Sequence[str]) -> list[str]:
    parts, x = [], LEFT
    y = HEIGHT - 14
    for i, name in enumerate(names):
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{_color(name, i)}"/>')
        parts.append(f'<text x="{x + 14}" y="{y}">{escape(name)}</text>')
        x += 22 + 7 * len(name)
    return parts


def _svg(title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" aria-label="{escape(title)}" class="hq-chart">'
        "<style>.hq-chart text{font:11px sans-serif;fill:#444}.hq-chart .grid{stroke:#e3e3e3}"
        ".hq-chart .axis{stroke:#888}.hq-chart .empty{font-size:13px;fill:#888}</style>"
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def bar_chart(
    *, title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], y_label: str = "", stacked: bool = True
) -> str:
    """Bars per label, one colour per series, stacked (or side by side with `stacked=False`)."""
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
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2 - 10}" text-anchor="middle" class="empty">No data</text>')
    body += _legend(names)
    return _svg(title, body)


def line_chart(
    *, title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]], y_label: str = ""
) -> str:
    """One line per series; a missing value (None) breaks the line."""
    names = list(series)
    maximum = max((v for n in names for v in series[n] if v is not None), default=0)
    frame = _Frame(labels, maximum, y_label)
    body = frame.axes()
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
            body.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{color}">'
                f"<title>{escape(f'{labels[i]} {name}: {fmt(value)}')}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                body.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    if not any(v is not None for n in names for v in series[n]):
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2 - 10}" text-anchor="middle" class="empty">No data</text>')
    body += _legend(names)
    return _svg(title, body)
