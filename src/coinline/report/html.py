"""The report page: one self-contained HTML document (inline CSS, figures as data: URIs, no scripts, no
external resources), rendered by Jinja2 with autoescaping, from plain `Section` objects."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, select_autoescape


@dataclass(frozen=True)
class Badge:
    """A table cell or fact shown as a coloured tag; kind: ok | bad | warn | muted."""

    text: str
    kind: str = "muted"


@dataclass(frozen=True)
class Plot:
    key: str            # stable name (also the file name stem when written out as PNG)
    title: str
    png: bytes
    caption: str = ""

    @property
    def uri(self) -> str:
        from coinline.report.figures import data_uri

        return data_uri(self.png)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    facts: list[tuple[str, Any]] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    empty: str = ""       # shown when the section has nothing else (e.g. "none yet")


_CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;color:#1b1f23;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px;font-size:20px}
header .sub{font-size:13px;color:#c9d1d9}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid #d0d7de;font-size:13px}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:18px 0;padding:14px 20px}
h2{font-size:17px;margin:4px 0 10px}
h3{font-size:14px;margin:14px 0 6px}
p.intro,p.note,p.empty{font-size:13px;color:#57606a;margin:6px 0}
p.empty{font-style:italic}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;font-size:13px;margin:6px 0 10px}
dl.facts dt{color:#57606a}
dl.facts dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
figure{margin:10px 0 14px}
figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{font-size:12px;color:#57606a;margin-top:4px}
.tablewrap{overflow-x:auto;max-height:520px;overflow-y:auto;border:1px solid #eaeef2}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{padding:3px 8px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}
th,td{white-space:nowrap}
td.wide{white-space:normal;min-width:22em;max-width:48em;overflow-wrap:anywhere}
th{background:#f6f8fa;position:sticky;top:0}
td.num{white-space:nowrap;text-align:right;font-family:ui-monospace,Menlo,Consolas,monospace}
.badge{display:inline-block;white-space:nowrap;padding:0 6px;border-radius:10px;font-size:11px;font-weight:600}
.badge.ok{background:#dafbe1;color:#116329}
.badge.bad{background:#ffebe9;color:#a40e26}
.badge.warn{background:#fff8c5;color:#7d4e00}
.badge.muted{background:#eaeef2;color:#57606a}
footer{font-size:12px;color:#57606a;padding:0 28px 24px}
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ css|safe }}</style>
</head>
<body data-report="coinline" data-run-id="{{ run_id }}">
<header>
<h1>{{ title }}</h1>
<div class="sub">{% for k, v in header %}{{ k }}: <strong>{{ v }}</strong>{% if not loop.last %} &middot; {% endif %}{% endfor %}</div>
</header>
<nav>{% for s in sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
<main>
{% for s in sections %}
<section id="{{ s.id }}" data-section="{{ s.id }}">
<h2>{{ s.title }}</h2>
{% if s.intro %}<p class="intro">{{ s.intro }}</p>{% endif %}
{% if s.facts %}<dl class="facts">{% for k, v in s.facts %}<dt>{{ k }}</dt><dd>{{ cell(v) }}</dd>{% endfor %}</dl>{% endif %}
{% for p in s.plots %}
<figure data-plot="{{ p.key }}"><img src="{{ p.uri }}" alt="{{ p.title }}">
<figcaption>{{ p.title }}{% if p.caption %} &mdash; {{ p.caption }}{% endif %}</figcaption></figure>
{% endfor %}
{% for t in s.tables %}
<h3>{{ t.title }}</h3>
{% if t.rows %}
<div class="tablewrap"><table>
<thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in t.rows %}<tr>{% for v in r %}<td{{ cls(v) }}>{{ cell(v) }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table></div>
{% else %}<p class="empty">none</p>{% endif %}
{% if t.note %}<p class="note">{{ t.note }}</p>{% endif %}
{% endfor %}
{% if s.empty %}<p class="empty">{{ s.empty }}</p>{% endif %}
</section>
{% endfor %}
</main>
<footer>{% for line in footer %}{{ line }}<br>{% endfor %}</footer>
</body>
</html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True,
                   lstrip_blocks=True)


def fmt(value: Any) -> str:
    """Plain text of a cell value: floats to 4 significant decimals, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def _cell(value: Any):
    from markupsafe import Markup, escape

    if isinstance(value, Badge):
        return Markup('<span class="badge {}">{}</span>').format(
            value.kind if value.kind in ("ok", "bad", "warn", "muted") else "muted", value.text)
    return escape(fmt(value))


def _cls(value: Any):
    from markupsafe import Markup

    if isinstance(value, int | float) and not isinstance(value, bool):
        return Markup(' class="num"')
    if isinstance(value, str) and len(value) > 48:
        return Markup(' class="wide"')
    return ""


_env.globals.update(cell=_cell, cls=_cls)
_page = _env.from_string(_TEMPLATE)


def render_page(*, title: str, run_id: str, header: list[tuple[str, Any]], sections: list[Section],
                footer: list[str]) -> str:
    return _page.render(title=title, run_id=run_id, header=[(k, fmt(v)) for k, v in header], sections=sections,
                        footer=footer, css=_CSS)
