"""`epaiqa app`: the command started for real, its page driven in a headless Chromium (upload, score, region)."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from epaiqa.data.manifest import load_manifest
from epaiqa.scoring.load import load_scorer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
#: the red of the region drawn on the canvas (#ff2d55)
REGION_RED = (255, 45, 85)


@pytest.fixture(scope="module")
def app_url(baseline_sweep: Path, demo_root: Path):
    """``python -m epaiqa.serve app RUN --port 0 --root DEMO`` (what ``epaiqa app`` runs), its page's URL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("EPAIQA_API_KEY", None)
    command = [sys.executable, "-m", "epaiqa.serve", "app", str(baseline_sweep / "naturalness")]
    process = subprocess.Popen(
        [*command, "--port", "0", "--root", str(demo_root)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    url = None
    try:
        while url is None:
            line = lines.get(timeout=120)
            if found := re.search(r"open (http://127\.0\.0\.1:\d+)/ in a browser", line):
                url = found.group(1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        assert process.wait(timeout=30) == 0
        rest = "".join(lines.get() for _ in range(lines.qsize()))
        assert "Traceback" not in rest, rest


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it where apt-get can)")
def test_upload_two_images_and_read_the_scores(app_url: str, baseline_sweep: Path, demo_root: Path) -> None:
    from playwright.sync_api import sync_playwright

    sample = load_manifest(demo_root)[2]
    source, edited = demo_root / sample.source, demo_root / sample.edited
    want = load_scorer(baseline_sweep / "naturalness")(source, edited, sample.prompt)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(app_url + "/", wait_until="load")
            page.wait_for_function("document.getElementById('model').textContent.includes('wadiqam_nr')")
            page.set_input_files("#source", str(source))
            page.set_input_files("#edited", str(edited))
            page.fill("#prompt", sample.prompt)
            page.click("#submit")
            page.wait_for_selector("#result:not([hidden])", timeout=30_000)
            cells = page.locator("#scores tbody tr td").all_inner_texts()
            region = page.inner_text("#region")
            assert page.is_hidden("#explanation-box")  # a baseline explains nothing
            red = page.evaluate(
                """([r, g, b]) => { const c = document.getElementById('canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                for (let i = 0; i < d.length; i += 4) if (d[i] === r && d[i + 1] === g && d[i + 2] === b) n++;
                return [n, c.width, c.height]; }""",
                list(REGION_RED),
            )
            clean = list(errors)  # (the refused request below is logged by the browser as a failed load)
            # a sample of the root, with a box typed in: the box is the one scored
            page.select_option("#sample", "1")
            page.fill("#bbox", "0.5, 0.5, 0.4, 0.4")
            page.click("#submit")
            page.wait_for_function("document.getElementById('region').textContent.includes('given')")
            page.fill("#bbox", "0.9, 0.5, 0.5, 0.5")  # outside the image: the server's error, shown
            page.click("#submit")
            page.wait_for_selector("#error:not([hidden])")
            error = page.inner_text("#error")
        finally:
            browser.close()
    assert clean == [] and all("400" in e for e in errors)
    assert all(url.startswith(app_url) for url in requests if not url.startswith(("blob:", "data:")))
    assert cells[0] == "naturalness" and cells[1] == f"{want['score']:.3f}" and cells[4] == want["level"]
    assert f"{want['bbox'][0]:.3f}" in region and want["bbox_source"] in region
    assert red[0] > 50 and red[1] >= 384  # the region drawn on the (enlarged) edited image
    assert error.startswith("bbox: box leaves the image")
