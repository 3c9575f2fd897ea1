"""Small charts drawn as inline SVG: the audit report's plots, with no script and no library.

A :class:`Chart` holds series (lines and/or markers, with a tooltip per point), labelled
horizontal lines (thresholds, alert and trigger values), shaded bands (pauses) and its axes
(time, linear, log or category). :meth:`Chart.svg` draws it; :meth:`Chart.data` is the same
content as JSON, for readers that want the numbers. Every piece of text is escaped here, so
ledger text cannot reach the page as markup.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["Band", "Chart", "Line", "Series"]

Scale = Literal["time", "linear", "log", "category"]
Symbol = Literal["circle", "x", "triangle", "diamond", "square"]
X = float | datetime
W, H = 960, 380
LEFT, RIGHT, TOP, BOTTOM = 78, 24, 34, 64


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


@dataclass
class Series:
    """Points in order; ``None`` values are gaps. ``labels`` are per-point tooltips."""

    name: str
    xs: Sequence[X]
    ys: Sequence[Any]
    colour: str = "#1565c0"
    lines: bool = True
    markers: bool = True
    dash: bool = False
    symbol: Symbol = "circle"
    labels: list[str] | None = None
    errors: list[float] | None = None
    legend: bool = True


@dataclass
class Line:
    """A horizontal line at ``y`` with a label, from ``x0`` to ``x1`` (default: all across)."""

    y: float
    label: str
    colour: str = "#6a1b9a"
    x0: X | None = None
    x1: X | None = None


@dataclass
class Band:
    """A shaded stretch of the x axis (a pause until its resumption)."""

    x0: X
    x1: X
    colour: str = "#c62828"


@dataclass
class Chart:
    """One plot; see the module docstring."""

    title: str
    x_scale: Scale
    y_scale: Scale
    x_title: str = ""
    y_title: str = ""
    categories: list[str] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)

    # --- the numbers ---------------------------------------------------------------------------

    def data(self) -> dict[str, Any]:
        """The chart's content as JSON-ready data (times as RFC 3339 text)."""
        def v(x: Any) -> Any:
            return x.astimezone(UTC).isoformat().replace("+00:00", "Z") \
                if isinstance(x, datetime) else x

        return {
            "title": self.title, "x": {"scale": self.x_scale, "title": self.x_title},
            "y": {"scale": self.y_scale, "title": self.y_title},
            "series": [{"name": s.name, "x": [v(x) for x in s.xs], "y": [v(y) for y in s.ys]}
                       for s in self.series],
            "lines": [{"y": ln.y, "label": ln.label} for ln in self.lines],
            "bands": [{"x0": v(b.x0), "x1": v(b.x1)} for b in self.bands],
        }

    # --- drawing -------------------------------------------------------------------------------

    def svg(self) -> str:
        """The chart as one ``<svg>`` element (scales with the page's width)."""
        xs = [x for s in self.series for x in s.xs] + [b.x0 for b in self.bands] + [
            b.x1 for b in self.bands]
        ys = [y for s in self.series for y in s.ys if y is not None] + [
            ln.y for ln in self.lines]
        fx = _Axis(self.x_scale, [_num(x) for x in xs], LEFT, W - RIGHT)
        fy = _Axis(self.y_scale, [_num(y) for y in ys] if self.y_scale != "category" else [],
                   H - BOTTOM, TOP, self.categories)
        out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
               f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif" '
               f'font-size="11"><title>{_e(self.title)}</title>',
               f'<text x="{LEFT}" y="20" font-size="14" font-weight="600">{_e(self.title)}'
               "</text>"]
        out += self._bands(fx) + fx.grid(vertical=True) + fy.grid(vertical=False)
        out += self._axis_titles()
        if not xs and not ys:
            out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#757575">'
                       "nothing recorded</text>")
        out += self._lines(fx, fy)
        for s in self.series:
            out += _draw(s, fx, fy)
        out += self._legend()
        out.append("</svg>")
        return "".join(out)

    def _bands(self, fx: _Axis) -> list[str]:
        return [f'<rect x="{min(fx(b.x0), fx(b.x1)):.1f}" y="{TOP}" '
                f'width="{abs(fx(b.x1) - fx(b.x0)):.1f}" height="{H - TOP - BOTTOM}" '
                f'fill="{b.colour}" opacity="0.08"/>' for b in self.bands]

    def _lines(self, fx: _Axis, fy: _Axis) -> list[str]:
        out = []
        for ln in self.lines:
            y = fy(ln.y)
            a = LEFT if ln.x0 is None else fx(ln.x0)
            b = W - RIGHT if ln.x1 is None else fx(ln.x1)
            out.append(f'<g><title>{_e(ln.label)}</title><line x1="{a:.1f}" y1="{y:.1f}" '
                       f'x2="{b:.1f}" y2="{y:.1f}" stroke="{ln.colour}" stroke-width="1.2" '
                       'stroke-dasharray="6 4"/>'
                       f'<text x="{a + 4:.1f}" y="{y - 4:.1f}" fill="{ln.colour}">'
                       f"{_e(ln.label[:120])}</text></g>")
        return out

    def _axis_titles(self) -> list[str]:
        return [f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - BOTTOM + 34}" '
                f'text-anchor="middle" fill="#546e7a">{_e(self.x_title)}</text>',
                f'<text transform="translate(14 {(TOP + H - BOTTOM) / 2}) rotate(-90)" '
                f'text-anchor="middle" fill="#546e7a">{_e(self.y_title)}</text>']

    def _legend(self) -> list[str]:
        out, x = [], float(LEFT)
        for s in self.series:
            if not s.legend:
                continue
            name = _e(s.name[:60])
            out.append(f'<rect x="{x:.0f}" y="{H - 16}" width="12" height="4" '
                       f'fill="{s.colour}"/><text x="{x + 16:.0f}" y="{H - 11}">{name}</text>')
            x += 28 + 6.2 * len(s.name[:60])
        return out


def _num(x: Any) -> float:
    return x.timestamp() if isinstance(x, datetime) else float(x)


class _Axis:
    """Maps values to pixels between ``a`` and ``b``; draws its ticks and grid."""

    def __init__(self, scale: Scale, values: list[float], a: float, b: float,
                 categories: list[str] | None = None) -> None:
        self.scale, self.a, self.b = scale, a, b
        self.categories = categories or []
        if scale == "log":
            values = [math.log10(v) for v in values if v > 0]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        if hi - lo < 1e-12:
            lo, hi = lo - (0.5 if scale == "log" else abs(lo) * 0.1 + 1), hi + (
                0.5 if scale == "log" else abs(hi) * 0.1 + 1)
        pad = (hi - lo) * 0.05
        self.lo, self.hi = lo - pad, hi + pad

    def __call__(self, value: Any) -> float:
        if self.scale == "category":
            n = max(len(self.categories), 1)
            k = self.categories.index(value) if value in self.categories else 0
            return self.a + (self.b - self.a) * (k + 0.5) / n
        v = _num(value)
        if self.scale == "log":
            v = math.log10(v) if v > 0 else self.lo
        return self.a + (self.b - self.a) * (v - self.lo) / (self.hi - self.lo)

    def ticks(self) -> list[tuple[float, str]]:
        if self.scale == "category":
            return [(self(c), c) for c in self.categories]
        if self.scale == "log":
            first, last = math.ceil(self.lo), math.floor(self.hi)
            every = max(1, (last - first) // 8 + 1)
            return [(self(10.0 ** k), f"1e{k}") for k in range(first, last + 1, every)]
        step = _nice((self.hi - self.lo) / 6)
        k = math.ceil(self.lo / step)
        out = []
        while k * step <= self.hi:
            v = k * step
            out.append((self(v), _time_label(v, self.hi - self.lo) if self.scale == "time"
                        else f"{v:g}"))
            k += 1
        return out

    def grid(self, vertical: bool) -> list[str]:
        out = []
        for pos, label in self.ticks():
            if vertical:
                out.append(f'<line x1="{pos:.1f}" y1="{TOP}" x2="{pos:.1f}" y2="{H - BOTTOM}" '
                           f'stroke="#eceff1"/><text x="{pos:.1f}" y="{H - BOTTOM + 16}" '
                           f'text-anchor="middle" fill="#546e7a">{_e(label)}</text>')
            else:
                out.append(f'<line x1="{LEFT}" y1="{pos:.1f}" x2="{W - RIGHT}" y2="{pos:.1f}" '
                           f'stroke="#eceff1"/><text x="{LEFT - 6}" y="{pos + 4:.1f}" '
                           f'text-anchor="end" fill="#546e7a">{_e(label)}</text>')
        return out


def _nice(raw: float) -> float:
    base = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 5, 10):
        if raw <= m * base:
            return m * base
    return 10 * base


def _time_label(t: float, span: float) -> str:
    at = datetime.fromtimestamp(t, UTC)
    return at.strftime("%Y-%m-%d" if span > 3 * 86400 else "%m-%d %H:%M" if span > 3600
                       else "%H:%M:%S")


def _draw(s: Series, fx: _Axis, fy: _Axis) -> list[str]:
    pts = [(fx(x), fy(y), i) for i, (x, y) in enumerate(zip(s.xs, s.ys, strict=True))
           if y is not None and not (fy.scale == "log" and isinstance(y, int | float) and y <= 0)]
    out = [f'<g class="series" data-name="{_e(s.name)}">']
    if s.lines and len(pts) > 1:
        path = "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
        dash = ' stroke-dasharray="3 3"' if s.dash else ""
        out.append(f'<path d="{path}" fill="none" stroke="{s.colour}" stroke-width="2"{dash}/>')
    if s.markers:
        for x, y, i in pts:
            tip = f"<title>{_e(s.labels[i])}</title>" if s.labels else ""
            err = ""
            if s.errors and s.errors[i]:
                top, bottom = fy(s.ys[i] + s.errors[i]), fy(s.ys[i] - s.errors[i])
                err = (f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
                       f'stroke="{s.colour}"/>')
            out.append(f"<g>{tip}{err}{_marker(s.symbol, x, y, s.colour)}</g>")
    out.append("</g>")
    return out


def _marker(symbol: Symbol, x: float, y: float, colour: str) -> str:
    if symbol == "x":
        return (f'<path d="M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}M{x - 5:.1f},'
                f'{y + 5:.1f}L{x + 5:.1f},{y - 5:.1f}" stroke="{colour}" stroke-width="2.5"/>')
    shapes: dict[str, list[tuple[float, float]]] = {
              "triangle": [(0, -6), (5.5, 4), (-5.5, 4)],
              "diamond": [(0, -6), (6, 0), (0, 6), (-6, 0)],
              "square": [(-4.5, -4.5), (4.5, -4.5), (4.5, 4.5), (-4.5, 4.5)]}
    if symbol in shapes:
        points = " ".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in shapes[symbol])
        return f'<polygon points="{points}" fill="{colour}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
