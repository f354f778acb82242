"""The group report in a real headless browser (Debian chromium): no console errors, a non-blank page,
one table row per run, and the table sorts when a header is clicked.

Chromium is part of the CI image (``.ci/run`` installs it). Without it these
tests fail, unless ``DSRPIPE_NO_BROWSER=1`` says that this machine has none
(then they are skipped, and the skip says why).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from report_checks import write_synthetic_run

from dsrpipe.reporting.analysis_figures import plot_pe_curve
from dsrpipe.reporting.html import figure_to_png_bytes
from dsrpipe.reporting import run_figures
from dsrpipe.reporting.run_figures import FIGURES, FIGURES_DIR
from dsrpipe.reporting.stage import run_group

BROWSERS = ("chromium", "chromium-browser")
SUBJECTS = ("01", "02", "03")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("DSRPIPE_NO_BROWSER") == "1":
        pytest.skip("no chromium on this machine (DSRPIPE_NO_BROWSER=1)")
    pytest.fail("chromium not found: install it (apt-get install --no-install-recommends chromium) "
                "or set DSRPIPE_NO_BROWSER=1 to skip the browser tests")


def _chromium(tmp_path, *args, timeout=120) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A group report over four synthetic runs (two seeds of subject 01) from run files, made as the workflow
    makes it (figure folders written into the runs). Drawing the run figures is tested in test_reporting;
    here one cheap real figure stands in for all of them, to keep the test fast."""
    root = tmp_path_factory.mktemp("runs")
    runs = [write_synthetic_run(root, s, seed) for s in SUBJECTS for seed in ((0, 1) if s == "01" else (0,))]
    png = figure_to_png_bytes(plot_pe_curve([0.1, 0.2, 0.4], {"mean": [1.0, 1.0, 1.0]}), 72, 32)
    out = root / "group"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_figures, "run_pngs", lambda run, *a, **k: dict.fromkeys(FIGURES, png))
        run_group([m for m, _ in runs], [t for _, t in runs], table_out=out / "runs.parquet",
                  summary_out=out / "summary.parquet", report_out=out / "report.html",
                  figure_dirs=[m.parent / FIGURES_DIR for m, _ in runs])
    assert sorted(p.name for p in (runs[-1][0].parent / FIGURES_DIR).iterdir()) == sorted(f"{n}.png" for n in FIGURES)
    return out / "report.html", len(runs)


def test_report_renders_without_console_errors_and_is_not_blank(report, tmp_path):
    from PIL import Image

    html, _ = report
    shot = tmp_path / "shot.png"
    proc = _chromium(tmp_path, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                     "--window-size=1200,2000", "--virtual-time-budget=3000", html.as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    img = Image.open(shot).convert("L")
    assert img.size == (1200, 2000)
    lo, hi = img.getextrema()
    colours = len(img.getcolors(maxcolors=1 << 16) or [])
    assert hi - lo > 100 and colours > 20, f"blank-looking screenshot: range {lo}-{hi}, {colours} grey levels"


def _rows(dom: str) -> list[str]:
    table = re.search(r'<table class="dsr sortable">.*?</table>', dom, re.S)
    assert table, "no sortable table in the page"
    return re.findall(r"<tbody>.*?</tbody>", table.group(0), re.S)[0].split("<tr>")[1:]


def test_table_has_one_linked_row_per_run_and_sorts(report, tmp_path):
    html, n_runs = report
    # every run's figures from its folder, plus the overview's distributions and truth comparison
    assert html.read_text().count("data:image/png") == n_runs * len(FIGURES) + 2
    dom = _chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", html.as_uri()).stdout
    rows = _rows(dom)
    assert len(rows) == n_runs
    for row in rows:
        anchor = re.search(r'href="#([^"]+)"', row).group(1)
        assert f'id="{anchor}"' in dom  # every row links to its run's section

    # click the d_stsp header twice (descending) after load, then dump the DOM
    sort_js = html.parent / "sorted.html"
    sort_js.write_text(html.read_text().replace(
        "</body>", "<script>var th = Array.prototype.find.call(document.querySelectorAll("
                   "'table.sortable th'), function (h) { return h.textContent === 'd_stsp'; });"
                   "th.click(); th.click();</script></body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", sort_js.as_uri()).stdout
    header = re.search(r'<table class="dsr sortable">.*?</thead>', dom, re.S).group(0)
    col = [re.sub(r"<.*?>", "", h) for h in re.findall(r"<th[^>]*>.*?</th>", header)].index("d_stsp")
    values = [float(re.findall(r"<td[^>]*>(.*?)</td>", row)[col]) for row in _rows(dom)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    assert 'aria-sort="descending"' in header
