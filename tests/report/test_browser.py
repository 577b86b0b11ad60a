"""The report opened in headless Chromium (Debian package `chromium`): the page loads, every section is
there and every figure decodes as an image with its real size. Skipped when /usr/bin/chromium is absent."""

from __future__ import annotations

import base64
import re
import struct
import subprocess
from pathlib import Path

import pytest

from coinline.report import build_report
from tests.report import PLOTS_FULL, SECTIONS, full_report_lake

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium (apt-get install chromium)")

# Added to a copy of the page (the report itself carries no scripts): once the page has loaded, record how
# many images completed with a decoded size, and their natural widths, as attributes of <body>.
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
  var b = document.body;
  b.setAttribute("data-images-total", String(imgs.length));
  b.setAttribute("data-images-ok", String(ok.length));
  b.setAttribute("data-image-widths", imgs.map(function (i) { return i.naturalWidth; }).join(","));
  b.setAttribute("data-sections", Array.prototype.map.call(document.querySelectorAll("section"),
                                                           function (s) { return s.id; }).join(","));
  b.setAttribute("data-probe", "done");
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def _png_width(uri: str) -> int:
    png = base64.b64decode(uri.split(",", 1)[1])
    return struct.unpack(">I", png[16:20])[0]  # IHDR width


def test_chromium_loads_the_report_and_renders_every_figure(tmp_path_factory, tmp_path):
    lake, run_id = full_report_lake(tmp_path_factory.getbasetemp())
    html = build_report(lake, run_id)
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")

    done = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body[^>]*>", done.stdout)
    assert body, f"no <body> in the dumped DOM: {done.stdout[:500]!r} {done.stderr[-1000:]}"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(0)))
    assert attrs.get("data-probe") == "done", attrs
    assert attrs["data-run-id"] == run_id
    assert attrs["data-sections"].split(",") == list(SECTIONS)
    assert int(attrs["data-images-total"]) == len(PLOTS_FULL)
    assert attrs["data-images-ok"] == attrs["data-images-total"]
    expected = [_png_width(u) for u in re.findall(r'<img src="(data:image/png;base64,[^"]+)"', html)]
    assert [int(w) for w in attrs["data-image-widths"].split(",")] == expected

    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        colours = img.convert("RGB").resize((64, 120)).getcolors(64 * 120)
        assert colours is not None and len(colours) > 20  # not a blank page
