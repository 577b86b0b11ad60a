"""The oversight report of a real (small) training run: every section and figure present, figures decode,
nothing external, lake content escaped, and "none yet" where decisions and triggers are absent."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from coinline.cli import main
from coinline.report import ReportError, build_report, metrics_sections, render_page, report_content
from tests.report import (
    ACTIVE_RUN,
    HOSTILE,
    ODD_COIN,
    PLOTS_BARE,
    PLOTS_FULL,
    SECTIONS,
    full_report_lake,
    report_lake,
)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.plots: list[str] = []
        self.images: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "figure":
            self.plots.append(a.get("data-plot", ""))
        if tag == "img":
            self.images.append(a.get("src", ""))
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data", "background") or name.startswith("on"):
                self.urls.append((tag, name, value or ""))


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}".*?</section>', html, re.S)
    assert m, f"no section {sid}"
    return m.group(0)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    lake, run_id = report_lake(tmp_path_factory.getbasetemp())
    return lake, run_id, build_report(lake, run_id)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    lake, run_id = full_report_lake(tmp_path_factory.getbasetemp())
    return lake, run_id, build_report(lake, run_id)


@pytest.mark.parametrize("which", ["bare", "full"])
def test_every_section_is_present_with_its_figures_and_they_decode(which, request):
    _, run_id, html = request.getfixturevalue(which)
    page = _parse(html)
    assert page.sections == list(SECTIONS)
    expected = PLOTS_FULL if which == "full" else PLOTS_BARE
    assert sorted(page.plots) == sorted(expected)
    assert len(page.images) == len(expected)
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        img = Image.open(io.BytesIO(png))
        img.verify()
        assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 150
    assert f"coinline run report: {run_id}" in html


@pytest.mark.parametrize("which", ["bare", "full"])
def test_the_page_is_self_contained(which, request):
    _, _, html = request.getfixturevalue(which)
    page = _parse(html)
    assert not page.tags & {"script", "link", "iframe", "object", "embed", "base", "frame"}
    for tag, attr, value in page.urls:
        assert value.startswith(("data:", "#")), f"<{tag} {attr}={value[:60]!r}> points outside the page"
        assert not attr.startswith("on")
    for needle in ("http://", "https://", "file://", "url(", "@import", "//cdn"):
        assert needle not in html


def test_lake_content_is_html_escaped(full):
    _, _, html = full
    assert ODD_COIN not in html and HOSTILE not in html
    assert "&lt;b&gt;X&amp;Y&#34;&lt;/b&gt;" in html       # the coin in the tables
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # a drift reason
    assert _parse(html).tags.isdisjoint({"b", "script"})


def test_without_decisions_or_triggers_the_page_says_none_yet(bare):
    _, _, html = bare
    assert "none yet" in _section(html, "decisions")
    assert "none yet" in _section(html, "drift")
    summary = _section(html, "summary")
    assert "promotion decision" in summary and "none yet" in summary
    assert "active set: none yet" in _section(html, "oos")


def test_decisions_gates_triggers_and_the_active_set_are_rendered(full):
    _, run_id, html = full
    decisions = _section(html, "decisions")
    for text in ("dec-this", "REJECT", "dec-prev", "PROMOTE", "OOS_SKILL_BELOW_BASELINE", "WORSE_THAN_ACTIVE",
                 "oos_quality", "min_log_loss_skill", "this run"):
        assert text in decisions, text
    assert decisions.index("dec-this") < decisions.index("dec-prev")  # this run's decision first
    drift = _section(html, "drift")
    for text in ("20250411T010000Z-drift-1a2b3c4d", "20250411T000000Z-manual-5e6f7a8b", "feature ret_1: PSI",
                 "hit-rate drop", "breached", "weekly refresh"):
        assert text in drift, text
    assert f"active set: {ACTIVE_RUN}" in _section(html, "oos")
    assert ACTIVE_RUN in _section(html, "summary")
    gaps = _section(html, "gaps")
    assert "sim:RANDOMWALK:BTC-CAD:1h" in gaps and "venue halted trading" in gaps and "revised" in gaps
    content = report_content(*full[:2])
    assert [p.key for p in content.plots()] == [p for p in _parse(html).plots]
    assert run_id in html


def test_the_same_lake_gives_the_same_page(bare):
    lake, run_id, html = bare
    assert build_report(lake, run_id) == html


def test_an_unknown_run_is_an_error(bare):
    lake = bare[0]
    with pytest.raises(ReportError, match="run-nope"):
        build_report(lake, "run-nope")


def test_the_report_verb_writes_the_page(bare, tmp_path, monkeypatch, capsys):
    lake, run_id, _ = bare
    monkeypatch.chdir(tmp_path)
    for var in ("HIST_MARKET_DATA_API_KEY", "COINLINE_VENUE", "UNIVERSE_SOURCE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OBJECT_STORE_URL", lake.root)
    monkeypatch.setenv("COINLINE_REPLAY_HISTORY_DAYS", "2")
    out = tmp_path / "out" / "report.html"
    assert main(["--now", "2025-04-12T00:00:00Z", "report", run_id, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert _parse(html).sections == list(SECTIONS)
    assert "2025-04-12T00:00:00+00:00" in html  # generated-at from the pinned clock
    assert main(["report", "run-nope", "--out", str(tmp_path / "x.html")]) == 2
    assert not (tmp_path / "x.html").exists()


def test_a_sparse_metric_package_still_renders_every_section(lake):
    lake.write_json("runs/run-minimal/metrics.json", {"run_id": "run-minimal", "dataset_id": "no-such-dataset",
                                                      "per_coin": {}, "simulation": {}})
    html = build_report(lake, "run-minimal")
    page = _parse(html)
    assert page.sections == list(SECTIONS) and page.images == []
    assert "dataset no-such-dataset not found" in html
    assert "none yet" in _section(html, "decisions") and "none yet" in _section(html, "drift")


def test_metric_only_sections_render_from_metrics_json_alone(bare):
    lake, run_id, _ = bare
    sections = metrics_sections(lake.read_json(f"runs/{run_id}/metrics.json"))
    assert [p.key for s in sections for p in s.plots] == ["oos_metrics", "calibration", "equity"]
    html = render_page(title="t", run_id=run_id, header=[], sections=sections, footer=[])
    assert _parse(html).sections == ["oos", "calibration", "simulation"]


def test_the_oos_section_judges_every_horizon_the_ensemble_and_the_risk_head(bare):
    _, _, html = bare
    for title in ("Every served horizon vs the base rate", "Ensemble vs its best single member",
                  "Risk head vs EWMA and HAR-RV"):
        assert title in html
    for name in ("served", "ewma", "har", "constant"):
        assert f"<td>{name}</td>" in html
