"""Small builders the report's sections share: a figure as a Plot, a capped Table, a safe nested get,
a yes/no badge."""

from __future__ import annotations

from coinline.report import figures as figs
from coinline.report.html import Badge, Plot, Table

MAX_ROWS = 200          # longest table rendered in full; longer ones show their newest/first rows


def plot(key: str, title: str, fig, caption: str = "") -> Plot:
    return Plot(key, title, figs.png_bytes(fig), caption)


def capped(title: str, columns: list[str], rows: list[list]) -> Table:
    note = f"showing {MAX_ROWS} of {len(rows)} rows" if len(rows) > MAX_ROWS else ""
    return Table(title, columns, rows[:MAX_ROWS], note=note)


def get(obj, *path):
    for p in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def sig(ok) -> Badge | str:
    if ok is None:
        return ""
    return Badge("yes", "ok") if ok else Badge("no")
