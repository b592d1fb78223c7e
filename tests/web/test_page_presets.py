"""The web page's presets and ZIPs through Flask's client: exact sizes, LINE's sticker rules, one
ZIP of several photos, and a pass that did not send a photo cannot bundle it."""
from __future__ import annotations

import io
import re
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from app import create_app
from settings import Settings
from tests.conftest import jpeg_bytes, shared_image

PHOTOS = ("GT04", "GT13", "GT25")


@pytest.fixture(scope="module")
def client(tmp_path_factory, real_pipeline):
    data_dir = tmp_path_factory.mktemp("presets") / "var"
    app = create_app(Settings(data_dir=data_dir, warm_up=False), pipeline=real_pipeline)
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    client.token = re.search(r'name="cutout-page-token" content="([^"]+)"', html).group(1)
    client.data_dir = data_dir
    yield client
    app.extensions["cutout"]["worker"].stop()


@pytest.fixture(scope="module")
def jobs(client) -> list[str]:
    """Three finished photos of one page; two share the upload name 'item.jpg'."""
    ids = []
    for photo, name in zip(PHOTOS, ("teddy.jpg", "item.jpg", "item.jpg")):
        form = {"image_file": (io.BytesIO(jpeg_bytes(shared_image(photo), 320)), name)}
        accepted = client.post("/page/jobs", data=form, content_type="multipart/form-data",
                               headers={"X-Page-Token": client.token})
        assert accepted.status_code == 202, accepted.get_data(as_text=True)
        ids.append(accepted.get_json()["id"])
    deadline = time.monotonic() + 120
    for job_id in ids:
        while (state := client.get(f"/page/jobs/{job_id}").get_json()["state"]) not in ("done", "failed"):
            assert time.monotonic() < deadline, f"{job_id} stuck in {state}"
            time.sleep(0.05)
        assert state == "done"
    return ids


def image(response) -> Image.Image:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return Image.open(io.BytesIO(response.data))


def subject_box(picture: Image.Image, background=(255, 255, 255)) -> tuple[int, int, int, int]:
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    ys, xs = np.nonzero(np.abs(pixels - background).sum(axis=2) > 30)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_preset_downloads_have_the_presets_exact_sizes_and_names(client, jobs):
    teddy = jobs[0]
    product = client.get(f"/page/jobs/{teddy}/download?preset=product&size=1200&margin=10%&shadow=1&format=png")
    assert 'filename=teddy-product.png' in product.headers["Content-Disposition"]
    square = image(product)
    assert square.size == (1200, 1200) and square.format == "PNG"
    # The margin is the setting (10 % of 1200) on the sides that touch it, the subject centred.
    left, top, right, bottom = subject_box(square)
    assert abs(left - (1200 - right)) <= 12  # centred within 1 % (the shadow below leaves top/bottom uneven)
    assert abs(min(left, top) - 120) <= 12 and min(left, 1200 - right, top) >= 108  # the margin, within 1 %
    assert image(client.get(f"/page/jobs/{teddy}/download?preset=product")).size == (2000, 2000)
    post = client.get(f"/page/jobs/{teddy}/download?preset=post&size=1080x1350")
    assert image(post).size == (1080, 1350) and "teddy-post.jpg" in post.headers["Content-Disposition"]
    assert image(client.get(f"/page/jobs/{teddy}/download?preset=story&bg=white")).size == (1080, 1920)
    custom = client.get(f"/page/jobs/{teddy}/download?preset=custom&size=640x200&format=png")
    assert image(custom).size == (640, 200) and image(custom).mode == "RGBA"
    assert "teddy-custom-640x200.png" in custom.headers["Content-Disposition"]


def test_the_live_preview_is_small_and_keeps_the_presets_shape(client, jobs):
    teddy = jobs[0]
    started = time.monotonic()
    assert image(client.get(f"/page/jobs/{teddy}/view?preset=product&size=2000&margin=8%")).size == (480, 480)
    assert time.monotonic() - started < 3
    assert image(client.get(f"/page/jobs/{teddy}/view?preset=post&size=1080x1350")).size == (384, 480)
    assert image(client.get(f"/page/jobs/{teddy}/view?preset=story")).size == (270, 480)
    refused = client.get(f"/page/jobs/{teddy}/view?preset=post&size=1000x1000")
    assert refused.status_code == 400 and refused.get_json()["errors"][0]["code"] == "invalid_preset"
    assert client.get(f"/page/jobs/{teddy}/view?preset=poster").status_code == 400


def test_the_sticker_download_is_a_line_set_that_follows_lines_rules(client, jobs):
    response = client.get(f"/page/jobs/{jobs[0]}/download?preset=sticker")
    assert response.status_code == 200 and "teddy-sticker.zip" in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert sorted(archive.namelist()) == ["01.png", "main.png", "tab.png"]
    sticker = Image.open(io.BytesIO(archive.read("01.png")))
    width, height = sticker.size
    assert sticker.mode == "RGBA" and width <= 370 and height <= 320 and width % 2 == 0 and height % 2 == 0
    assert len(archive.read("01.png")) <= 1024 * 1024
    alpha = np.asarray(sticker)[:, :, 3]
    assert alpha[:10].max() == 0 and alpha[-10:].max() == 0 and alpha[:, :10].max() == 0 and alpha[:, -10:].max() == 0
    assert Image.open(io.BytesIO(archive.read("main.png"))).size == (240, 240)
    assert Image.open(io.BytesIO(archive.read("tab.png"))).size == (96, 74)


def test_a_zip_of_three_photos_holds_three_files_named_after_their_uploads(client, jobs):
    response = client.post("/page/zip", json={"ids": jobs, "preset": "product", "size": "600"},
                           headers={"X-Page-Token": client.token})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.namelist() == ["teddy-product.jpg", "item-product.jpg", "item-product-2.jpg"]
    for name in archive.namelist():
        assert Image.open(io.BytesIO(archive.read(name))).size == (600, 600)
    own_size = client.post("/page/zip", json={"ids": jobs[:2]}, headers={"X-Page-Token": client.token})
    assert zipfile.ZipFile(io.BytesIO(own_size.data)).namelist() == ["teddy-cutout.png", "item-cutout.png"]


def test_only_the_page_that_sent_the_photos_can_bundle_them(client, jobs):
    # Another visitor's page pass: the same server, another page load within the same second.
    html = client.get("/").get_data(as_text=True)
    other = re.search(r'name="cutout-page-token" content="([^"]+)"', html).group(1)
    assert other != client.token
    refused = client.post("/page/zip", json={"ids": jobs}, headers={"X-Page-Token": other})
    assert refused.status_code == 403 and refused.get_json()["errors"][0]["code"] == "not_your_photo"
    without = client.post("/page/zip", json={"ids": jobs})
    assert without.status_code == 403 and without.get_json()["errors"][0]["code"] == "auth_failed"
    unknown = client.post("/page/zip", json={"ids": ["0" * 32]}, headers={"X-Page-Token": client.token})
    assert unknown.status_code == 404


def test_a_sticker_zip_of_several_photos_is_one_line_set(client, jobs):
    response = client.post("/page/zip", json={"ids": jobs, "preset": "sticker"}, headers={"X-Page-Token": client.token})
    assert response.status_code == 200 and "line-stickers.zip" in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.namelist() == ["01.png", "02.png", "03.png", "main.png", "tab.png"]
    for name in ("01.png", "02.png", "03.png"):
        width, height = Image.open(io.BytesIO(archive.read(name))).size
        assert width <= 370 and height <= 320 and width % 2 == 0 and height % 2 == 0
    refused = client.post("/page/zip", json={"ids": jobs, "preset": "sticker", "format": "jpg"},
                          headers={"X-Page-Token": client.token})
    assert refused.status_code == 400 and refused.get_json()["errors"][0]["code"] == "invalid_format"
