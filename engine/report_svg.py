"""Inline SVG pictures for the HTML run report: a line chart and a dependency graph.

Generated here rather than by a charting library: the report must open offline (no CDN, no scripts), and two
small pictures do not justify a plotting dependency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
STATUS_FILL = {"ok": "#dcfce7", "partial": "#fef9c3", "failed": "#fee2e2", "interrupted": "#fee2e2"}
NODE_STROKE = "#1e3a8a"


@dataclass(frozen=True)
class Series:
    """One line: points (x, y) in data units, already sorted by x; series of one ``group`` share a colour."""

    name: str
    points: Sequence[tuple[float, float]]
    group: int | None = None  # None: its own colour
    dashed: bool = False


def _ticks(top: float, count: int = 4) -> list[float]:
    return [top * i / count for i in range(count + 1)]


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str, width: int = 490,
               height: int = 260) -> str:
    """A chart with axes, ticks, a legend and one polyline per series (each point also a dot); ``width`` is the
    plot's and its margin's, the legend adds its own."""
    legend = max((len(s.name) for s in series), default=0) * 7 + 40  # room for the longest name
    width += legend
    height = max(height, 28 + 18 * len(series) + 8)  # every legend line fits
    left, right, top, bottom = 56, legend, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points] or [0.0]
    ys = [y for s in series for _, y in s.points] or [0.0]
    x_max, y_max = max(max(xs), 1e-9), max(max(ys), 1.0)

    def at(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * x / x_max, top + plot_h * (1 - y / y_max)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<title>{escape(title)}</title>',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#f8fafc" stroke="#94a3b8"/>']
    for value in _ticks(y_max):
        _, y = at(0, value)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e2e8f0"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_number(value)}</text>')
    for value in _ticks(x_max):
        x, _ = at(value, 0)
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle">'
                     f'{_number(value)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" font-size="11" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for index, line in enumerate(series):
        colour = PALETTE[(index if line.group is None else line.group) % len(PALETTE)]
        dash = ' stroke-dasharray="6 3"' if line.dashed else ""
        points = [at(x, y) for x, y in line.points]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline class="series" data-series="{escape(line.name)}" points="{path}" fill="none" '
                         f'stroke="{colour}" stroke-width="2"{dash}/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points]
        legend_y = top + 14 + 18 * index
        parts.append(f'<line x1="{left + plot_w + 10}" y1="{legend_y - 7}" x2="{left + plot_w + 26}" '
                     f'y2="{legend_y - 7}" stroke="{colour}" stroke-width="3"{dash}/>'
                     f'<text x="{left + plot_w + 30}" y="{legend_y - 3}" font-size="11">{escape(line.name)}</text>')
    if not any(s.points for s in series):
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" font-size="12" '
                     'text-anchor="middle" fill="#64748b">no samples</text>')
    parts.append("</svg>")
    return "".join(parts)


def _layers(nodes: Sequence[str], depends_on: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each node's column: one past the deepest flow it depends on (``nodes`` come in dependency order)."""
    layer: dict[str, int] = {}
    for node in nodes:
        layer[node] = max((layer[d] + 1 for d in depends_on.get(node, ()) if d in layer), default=0)
    return layer


def dependency_graph(nodes: Sequence[str], depends_on: Mapping[str, Sequence[str]],
                     status: Mapping[str, str], *, box_w: int = 210, box_h: int = 44) -> str:
    """Flows as boxes in columns by dependency depth, an arrow from each flow to the flows that depend on it.

    A box is coloured by the flow's status in the run; a flow that did not run in it is grey.
    """
    layer = _layers(nodes, depends_on)
    columns: dict[int, list[str]] = {}
    for node in nodes:
        columns.setdefault(layer[node], []).append(node)
    gap_x, gap_y, pad = 70, 18, 12
    place = {node: (pad + col * (box_w + gap_x), pad + row * (box_h + gap_y))
             for col, members in columns.items() for row, node in enumerate(members)}
    width = pad * 2 + max(len(columns), 1) * (box_w + gap_x) - gap_x
    height = pad * 2 + max((len(m) for m in columns.values()), default=1) * (box_h + gap_y) - gap_y
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="flow dependency graph">',
             '<title>flow dependency graph</title>',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#475569"/></marker></defs>']
    for node in nodes:
        for dep in depends_on.get(node, ()):
            if dep in place:
                (x1, y1), (x2, y2) = place[dep], place[node]
                parts.append(f'<line class="edge" data-from="{escape(dep)}" data-to="{escape(node)}" '
                             f'x1="{x1 + box_w}" y1="{y1 + box_h / 2}" x2="{x2}" y2="{y2 + box_h / 2}" '
                             'stroke="#475569" stroke-width="1.5" marker-end="url(#arrow)"/>')
    for node in nodes:
        x, y = place[node]
        state = status.get(node)
        fill = STATUS_FILL.get(state or "", "#e5e7eb")
        parts.append(f'<g class="node" data-flow="{escape(node)}"><rect x="{x}" y="{y}" width="{box_w}" '
                     f'height="{box_h}" rx="6" fill="{fill}" stroke="{NODE_STROKE}" stroke-width="2"/>'
                     f'<text x="{x + box_w / 2}" y="{y + 18}" font-size="12" text-anchor="middle">{escape(node)}</text>'
                     f'<text x="{x + box_w / 2}" y="{y + 34}" font-size="11" text-anchor="middle" fill="#475569">'
                     f'{escape(state or "not in this run")}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
