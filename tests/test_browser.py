"""End to end in a real headless Chromium (Debian's /usr/bin/chromium via Playwright): upload, colorize, fetch.

Skipped only when Chromium or Playwright is missing; CI installs both (apt-get install chromium; pip .[dev,web]).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM = os.environ.get("AUTOCOLOR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"Chromium not installed ({CHROMIUM}); apt-get install chromium", allow_module_level=True)
pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")

from conftest import free_port  # noqa: E402

from autocolor.app import build_app, launch  # noqa: E402
from autocolor.models import build  # noqa: E402
from autocolor.weights import save_model  # noqa: E402

H, W = 40, 56
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    torch.manual_seed(0)
    weights = save_model(build("seed-lab").eval(), tmp_path_factory.mktemp("model") / "tiny.safetensors", {})
    app = build_app(models=[str(weights)], max_upload_mb=1, max_pixels=1_000_000, device="cpu")
    launch(app, port=free_port(), max_upload_mb=1, block=False)
    yield app.local_url
    app.close()


@pytest.fixture(scope="module")
def page(url):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            pg = browser.new_page()
            pg.set_default_timeout(60_000)
            yield pg
        finally:
            browser.close()


def upload(page, url: str, path: Path) -> None:
    """Choose ``path`` in the upload widget and wait until the page shows it (reload and retry if it stalls)."""
    for _ in range(3):
        page.goto(url)
        page.locator("#upload input[type=file]").set_input_files(str(path))
        try:
            page.locator("#upload").get_by_text(path.name).first.wait_for(timeout=20_000)
            return
        except sync_api.TimeoutError:
            continue
    raise AssertionError(f"the page never showed the uploaded {path.name}")


def test_upload_colorize_and_fetch(page, url, tmp_path: Path) -> None:
    src = tmp_path / "grey.png"
    Image.fromarray(np.tile(np.linspace(30, 220, W).astype(np.uint8), (H, 1)), "L").save(src)
    upload(page, url, src)
    page.locator("#colorize").click()
    img = page.locator("#result img").first
    img.wait_for(state="visible")
    src_url = img.get_attribute("src")
    assert src_url
    resp = page.request.get(src_url if src_url.startswith("http") else url.rstrip("/") + "/" + src_url.lstrip("/"))
    assert resp.ok
    with Image.open(io.BytesIO(resp.body())) as out:
        assert out.size == (W, H)
        arr = np.asarray(out.convert("RGB")).astype(int)
    assert np.abs(arr[..., 0] - arr[..., 2]).mean() > 3  # channels differ: coloured
    link = page.locator("#download a").first
    link.wait_for()
    assert "grey-colorized.png" in (link.inner_text() + (link.get_attribute("href") or ""))


def test_bad_upload_shows_error(page, url, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_text("this is not an image")
    upload(page, url, bad)
    page.locator("#colorize").click()
    page.get_by_text("broken.png: not an image").first.wait_for()
    assert page.locator("#result img").count() == 0
