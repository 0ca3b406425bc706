"""The report as a reader sees it: opened in headless Chromium (Debian's `chromium`, installed by .ci/run).

Chromium loads a small checker page that frames the report (offline, from the file system), waits for every
image, clicks a leaderboard header and writes what it found into its DOM, which ``--dump-dom`` returns. Console
messages (errors, uncaught exceptions) are read from Chromium's log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_helpers import build_results

from fusebench.report import render_report, summarize

CHECKER = """<!DOCTYPE html><html><body>
<iframe id="page" src="PAGE" style="width:1400px;height:2000px"></iframe>
<script>
var frame = document.getElementById("page");
frame.addEventListener("load", function () {
  var d = frame.contentDocument;
  var images = Array.from(d.images);
  images.forEach(function (i) { i.loading = "eager"; });
  Promise.all(images.map(function (i) {
    return i.complete ? null : new Promise(function (r) { i.onload = i.onerror = r; });
  })).then(function () {
    var out = {
      broken: images.filter(function (i) { return i.naturalWidth === 0; })
        .map(function (i) { return i.getAttribute("src"); }),
      images: images.length,
      leaderboards: d.querySelectorAll("table.leaderboard tbody tr").length,
      cd: Array.from(d.querySelectorAll("figure.cd-diagram img"))
        .filter(function (i) { return i.naturalWidth > 0; }).length,
      conventions: d.querySelectorAll("table.conventions tbody tr").length,
      sorted: []
    };
    var table = d.querySelector("table.leaderboard");
    if (table) {
      var header = table.querySelector("th.sort[data-metric]");
      var column = Array.from(header.parentNode.children).indexOf(header);
      header.click();
      out.sorted = Array.from(table.tBodies[0].rows)
        .map(function (r) { return parseFloat(r.cells[column].dataset.value); });
    }
    var pre = document.createElement("pre");
    pre.id = "result";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
});
</script></body></html>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is missing; .ci/run installs Debian's chromium package")
    pytest.skip("no Chromium (apt-get install chromium)")


def _run(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=180)


def inspect(chromium: str, page: Path) -> tuple[dict, list[str]]:
    """What the checker found in ``page``, and Chromium's console messages."""
    checker = page.with_name(".check.html")
    checker.write_text(CHECKER.replace("PAGE", page.name), encoding="utf-8")
    try:
        result = _run(
            chromium, "--allow-file-access-from-files", "--virtual-time-budget=30000", "--dump-dom", checker.as_uri()
        )
    finally:
        checker.unlink()
    found = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stdout[-2000:] + result.stderr[-3000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), console


def test_checker_sees_console_errors_and_broken_images(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text('<img src="missing.png"><script>console.error("boom"); notDefined();</script>')
    found, console = inspect(chromium, page)
    assert found["broken"] == ["missing.png"]
    assert any('"boom"' in line for line in console) and any("notDefined" in line for line in console)


def test_report_in_chromium(chromium: str, mirror: Path, tmp_path: Path) -> None:
    results, plan = build_results(tmp_path, mirror)
    summarize(results, plan, results / "summary")
    page = render_report(results, plan, results / "summary", results / "report" / "index.html")

    found, console = inspect(chromium, page)
    assert console == []
    assert found["broken"] == [] and found["images"] > 20
    assert found["leaderboards"] == sum(len(d.methods) for d in plan.datasets)
    assert found["cd"] == len(plan.datasets)
    assert found["conventions"] > 0
    assert found["sorted"] == sorted(found["sorted"])  # the header click sorted the column

    shot = tmp_path / "screenshot.png"
    result = _run(chromium, "--window-size=1400,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), result.stderr[-3000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape == (2400, 1400) and pixels.std() > 20  # a rendered page, not a blank one
