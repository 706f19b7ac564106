"""report.html in a real browser: headless Chromium (Debian package `chromium`) loads the file
offline and every embedded figure decodes to an image. Skips, saying why, without chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

pytest.importorskip("matplotlib")

from adaptim.lab.report import write_report  # noqa: E402
from adaptim.lab.runner import SuiteConfig, run_suite  # noqa: E402

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium",
                             shutil.which("chromium-browser")) if p and shutil.os.path.exists(p)),
                None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found (Debian: apt-get install chromium)")

# Appended to a copy of the report: after load, record every image's decoded size in the DOM.
_PROBE = """
<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  document.body.setAttribute('data-img-check', JSON.stringify(imgs));
});
</script>
"""


def _chromium(*args, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def test_report_images_render_in_chromium(tmp_path):
    result = run_suite(SuiteConfig(tasks=["surfaces", "deep", "exploding"],
                                   optimizers=["sgd", "adam"], steps=8, seeds=2, fast=True))
    write_report(result, tmp_path / "report")
    report = tmp_path / "report" / "report.html"
    n_images = report.read_text().count("<img ")
    assert n_images >= 6

    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", _PROBE + "</body>"))
    proc = _chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri(),
                     tmp_path=tmp_path)
    match = re.search(r'data-img-check="([^"]*)"', proc.stdout)
    assert match, f"no image check in the DOM; stderr: {proc.stderr[-2000:]}"
    images = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(images) == n_images
    for complete, width, height in images:
        assert complete and width > 200 and height > 150

    shot = tmp_path / "shot.png"
    proc = _chromium("--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}",
                     report.as_uri(), tmp_path=tmp_path)
    assert shot.exists(), proc.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    # Not a blank page: plenty of distinct grey levels (text, tables, figures).
    assert pixels[..., :3].std() > 0.05
    assert len({round(float(v), 2) for v in pixels[::17, ::17, :3].mean(axis=2).ravel()}) > 20
