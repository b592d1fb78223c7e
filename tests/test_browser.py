"""A real browser (Debian's chromium, headless, via selenium) uploads a photo on the page served
by gunicorn, waits for the cutout, and checks the PNG it would download has a real alpha channel."""
from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import loud_skip, shared_image
from tests.gunicorn_server import GunicornServer


def test_page_upload_and_png_download(tmp_path, real_pipeline):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        loud_skip("chromium/chromedriver not installed (scripts/setup.sh --test installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "troll.jpg"
    image = Image.open(shared_image("GT04")).convert("RGB")
    image.thumbnail((480, 480))
    image.save(photo, "JPEG")

    server = GunicornServer({"CUTOUT_DATA_DIR": str(tmp_path / "var")}).start()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.get(server.base_url + "/")
        assert "去背" in driver.title
        driver.find_element(By.ID, "file").send_keys(str(photo))
        WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        href = driver.find_element(By.ID, "download-png").get_attribute("href")
        assert href.startswith("data:image/png;base64,")
        png = Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))
        assert png.mode == "RGBA" and png.size == image.size
        alpha = np.asarray(png)[:, :, 3]
        assert (alpha == 0).mean() > 0.2 and (alpha == 255).mean() > 0.2
        # English toggle works without reloading.
        driver.find_element(By.ID, "lang").click()
        assert driver.find_element(By.ID, "download-png").text == "Download PNG"
    finally:
        driver.quit()
        server.stop()
