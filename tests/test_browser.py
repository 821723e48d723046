"""The report renders in headless Chromium: every figure loads and the console stays silent.

Chromium (Debian packages chromium, chromium-driver; `make sysdeps`) loads a copy of
``index.html`` with one probe script appended that, on ``load``, records how many ``<img>``
there are and how many decoded (``naturalWidth > 0``) as attributes of ``<body>``;
``--dump-dom`` prints the DOM after load and ``--enable-logging=stderr`` prints every console
message as an ``INFO:CONSOLE`` line. A control page with a planted console error and a
broken image shows that both detectors fire.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.setAttribute('data-imgs', imgs.length);
  document.body.setAttribute('data-imgs-ok', imgs.filter(i => i.complete && i.naturalWidth > 0).length);
});</script>"""
PNG_1PX = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (run `make sysdeps`: Debian package chromium)",
    ),
]


def load_in_chromium(html: Path, tmp: Path) -> tuple[str, list[str]]:
    """Open ``html`` (with the probe appended) headless; return the DOM after load and the console lines."""
    page = tmp / f"probe-{html.name}"
    text = html.read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    return res.stdout, console


def _attr(dom: str, name: str) -> int:
    m = re.search(rf'<body[^>]*\s{name}="(\d+)"', dom)
    assert m, f"probe did not run: no {name} on <body>"
    return int(m.group(1))


def test_detectors_fire_on_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        f"<html><body><img src='{PNG_1PX}'><img src='no-such.png'>"
        "<script>console.error('planted');</script></body></html>"
    )
    dom, console = load_in_chromium(bad, tmp_path)
    assert _attr(dom, "data-imgs") == 2 and _attr(dom, "data-imgs-ok") == 1
    assert any("planted" in c for c in console)


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_report_renders_with_every_figure_and_no_console_error(quick_run, tmp_path):
    index = quick_run["out"] / "index.html"
    dom, console = load_in_chromium(index, tmp_path)
    assert console == []
    n = _attr(dom, "data-imgs")
    assert n >= 1  # at least the forest plot
    assert _attr(dom, "data-imgs-ok") == n
    for heading in (
        "Data and provenance",
        "Models and priors",
        "Computation and diagnostics",
        "Posterior predictive checks",
        "Weighting sensitivity",
        "Model comparison",
        "Computational environment",
    ):
        assert heading in dom
    assert "SYNTHETIC DATA" in dom
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(https?:|//)', index.read_text(encoding="utf-8"))
