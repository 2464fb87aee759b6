"""The charts, drawn as inline SVG on the server from the aggregates the loader kept (no script, no library)."""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from exchange.console.rules import DAYS

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 760, 260, 56, 40, 16


def _svg(title: str, body: list[str], height: int = HEIGHT) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {height}" '
            f'width="100%" class="chart"><title>{escape(title)}</title>{"".join(body)}</svg>')


def _axis(maximum: int, plot_h: int) -> list[str]:
    out = [f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#888"/>',
           f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" stroke="#888"/>']
    for step in range(5):
        value = round(maximum * step / 4)
        y = TOP + plot_h - plot_h * step / 4
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{value}</text>')
    return out


def _day_labels(days: list[str], x_of: Any, plot_h: int) -> list[str]:
    every = max(1, len(days) // 8)
    return [f'<text x="{x_of(i):.1f}" y="{TOP + plot_h + 16}" font-size="11" text-anchor="middle">{escape(d[5:])}'
            f'</text>' for i, d in enumerate(days) if i % every == 0]


def stacked_days(title: str, rows: list[tuple[str, str, int]]) -> str:
    """Calls per agency per day: one stacked bar per day, one colour per agency, with a legend."""
    per_day: dict[str, dict[str, int]] = defaultdict(dict)
    for day, series, n in rows:
        per_day[day][series] = n
    days = sorted(per_day)
    names = sorted({s for _, s, _ in rows})
    if not days:
        return _svg(title, ['<text x="20" y="40">no entries</text>'])
    plot_h, plot_w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - 140
    maximum = max(sum(v.values()) for v in per_day.values()) or 1
    bar = plot_w / len(days)
    body = _axis(maximum, plot_h)
    for i, day in enumerate(days):
        y: float = TOP + plot_h
        for j, name in enumerate(names):
            n = per_day[day].get(name, 0)
            if not n:
                continue
            h = plot_h * n / maximum
            y -= h
            body.append(f'<rect x="{LEFT + i * bar + 1:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                        f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(day)} '
                        f'{escape(name)}: {n}</title></rect>')
    body += _day_labels(days, lambda i: LEFT + i * bar + bar / 2, plot_h)
    for j, name in enumerate(names):
        y = TOP + 14 * j
        body.append(f'<rect x="{WIDTH - 130}" y="{y}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
                    f'<text x="{WIDTH - 115}" y="{y + 9}" font-size="11">{escape(name)}</text>')
    return _svg(title, body)


def bars_by_day(title: str, rows: list[tuple[str, int]], colour: str = "#d62728") -> str:
    return stacked_days(title, [(day, "denials", n) for day, n in rows]).replace(PALETTE[0], colour)


def horizontal_bars(title: str, rows: list[tuple[str, int]]) -> str:
    rows = rows[:20]
    if not rows:
        return _svg(title, ['<text x="20" y="40">no entries</text>'])
    height = TOP + 22 * len(rows) + 10
    maximum = max(n for _, n in rows) or 1
    plot_w = WIDTH - 220
    body = []
    for i, (label, n) in enumerate(rows):
        y = TOP + 22 * i
        w = plot_w * n / maximum
        body.append(f'<text x="170" y="{y + 13}" text-anchor="end" font-size="12">{escape(label)}</text>'
                    f'<rect x="178" y="{y}" width="{w:.1f}" height="16" fill="{PALETTE[i % len(PALETTE)]}">'
                    f'<title>{escape(label)}: {n}</title></rect>'
                    f'<text x="{182 + w:.1f}" y="{y + 13}" font-size="11">{n}</text>')
    return _svg(title, body, height)


def heat_map(title: str, rows: list[tuple[int, int, int]], timezone: str) -> str:
    """Calls by weekday and hour of day (in the rules' timezone)."""
    counts = {(d, h): n for d, h, n in rows}
    maximum = max(counts.values(), default=0) or 1
    cell_w, cell_h, left = (WIDTH - 60) / 24, 24, 50
    body = []
    for d in range(7):
        y = TOP + d * cell_h
        body.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end" font-size="12">{DAYS[d]}</text>')
        for h in range(24):
            n = counts.get((d, h), 0)
            opacity = 0.06 + 0.94 * n / maximum if n else 0.0
            body.append(f'<rect x="{left + h * cell_w:.1f}" y="{y}" width="{cell_w - 1:.1f}" height="{cell_h - 1}" '
                        f'fill="#1f77b4" fill-opacity="{opacity:.2f}" stroke="#eee"><title>{DAYS[d]} {h:02d}:00 '
                        f'{escape(timezone)}: {n}</title></rect>')
    for h in range(0, 24, 3):
        body.append(f'<text x="{left + h * cell_w + cell_w / 2:.1f}" y="{TOP + 7 * cell_h + 14}" font-size="11" '
                    f'text-anchor="middle">{h:02d}</text>')
    return _svg(title, body, TOP + 7 * cell_h + 24)


def all_charts(aggregates: dict[str, Any], timezone: str) -> dict[str, str]:
    return {
        "agency_day": stacked_days("Calls per agency per day", aggregates["agency_day"]),
        "denials_day": bars_by_day("Denials (401/403) per day", aggregates["denials_day"]),
        "purpose": horizontal_bars("Calls by purpose", aggregates["purpose"]),
        "heat": heat_map(f"Calls by weekday and hour ({timezone})", aggregates["heat"], timezone),
    }
