"""The API's presets and remove.bg's scale, position and roi, with every unsupported value a 400."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA, jpeg_bytes, loud_skip
from tests.web.test_api import post


@pytest.fixture(scope="module")
def key_photo() -> bytes:
    """A key on a plain background: one clear subject, much wider than tall."""
    path = SHARED_DATA / "dis5k_te_dev" / "image" / "te2-key-2168174621.jpg"
    if not path.exists():
        loud_skip(f"evaluation data not found at {path} (../shared/data)")
    return jpeg_bytes(path, 320)


def alpha_of(response) -> np.ndarray:
    assert response.status_code == 200, response.get_json()
    return np.asarray(Image.open(io.BytesIO(response.data)).convert("RGBA"))[:, :, 3].astype(np.float32) / 255


def box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), inclusive, of alpha > 0.05."""
    rows = np.flatnonzero((alpha > 0.05).any(axis=1))
    cols = np.flatnonzero((alpha > 0.05).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


@pytest.fixture
def api_pipeline(real_pipeline):
    """Positions are checked to 3 px of the key's outline: at ISNet's native side, as shipped."""
    return real_pipeline


def test_presets_product_and_sticker(make_api, key_photo):
    client = make_api()
    product = post(client, {"preset": "product", "canvas_size": "600", "margin": "10%", "add_shadow": "true"},
                   files={"image_file": (key_photo, "key.jpg")})
    assert product.status_code == 200 and product.mimetype == "image/jpeg"
    assert product.headers["X-Width"] == product.headers["X-Height"] == "600"
    pixels = np.asarray(Image.open(io.BytesIO(product.data)).convert("RGB"))
    assert pixels.shape == (600, 600, 3) and pixels[:20, :20].min() >= 250  # on white

    sticker = post(client, {"preset": "sticker", "format": "png"}, files={"image_file": (key_photo, "key.jpg")})
    image = Image.open(io.BytesIO(sticker.data))
    width, height = image.size
    assert sticker.mimetype == "image/png" and image.mode == "RGBA"
    assert width <= 370 and height <= 320 and width % 2 == 0 and height % 2 == 0
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[:10].max() == 0 and alpha[-10:].max() == 0 and alpha[:, :10].max() == 0 and alpha[:, -10:].max() == 0


def test_scale_and_position_as_remove_bg_documents(make_api, key_photo):
    client = make_api()
    photo_w, photo_h = Image.open(io.BytesIO(key_photo)).size
    plain = alpha_of(post(client, files={"image_file": (key_photo, "key.jpg")}))
    # scale=50%: the subject's box fitted into half the image, centred (scale implies position=center).
    half = alpha_of(post(client, {"scale": "50%"}, files={"image_file": (key_photo, "key.jpg")}))
    assert half.shape == (photo_h, photo_w) == plain.shape
    left, top, right, bottom = box(half)
    width, height = right - left + 1, bottom - top + 1
    assert width <= 0.5 * photo_w + 2 and height <= 0.5 * photo_h + 2
    assert abs(width - 0.5 * photo_w) <= 3 or abs(height - 0.5 * photo_h) <= 3  # one side exactly half
    assert abs((left + right) / 2 - photo_w / 2) <= 3 and abs((top + bottom) / 2 - photo_h / 2) <= 3
    # position "0% 100%": flush with the bottom-left corner; the subject keeps its size without scale.
    corner = alpha_of(post(client, {"position": "0% 100%"}, files={"image_file": (key_photo, "key.jpg")}))
    left, top, right, bottom = box(corner)
    plain_left, plain_top, plain_right, plain_bottom = box(plain)
    assert left <= 1 and bottom >= photo_h - 2
    assert abs((right - left) - (plain_right - plain_left)) <= 2 and abs((bottom - top) - (plain_bottom - plain_top)) <= 2


def test_roi_keeps_only_the_region(make_api, key_photo):
    client = make_api()
    photo_w, photo_h = Image.open(io.BytesIO(key_photo)).size
    plain = alpha_of(post(client, files={"image_file": (key_photo, "key.jpg")}))
    half = photo_w // 2
    left_half = alpha_of(post(client, {"roi": f"0px 0px {half}px {photo_h}px"},
                              files={"image_file": (key_photo, "key.jpg")}))
    assert left_half.shape == plain.shape
    assert left_half[:, half:].max() == 0  # nothing outside the region is foreground
    assert left_half[:, :half].max() == 1 and (plain[:, half:] > 0.5).any()  # the part inside is kept


@pytest.mark.parametrize("fields,code", [
    ({"sclae": "50%"}, "unknown_parameter"),
    ({"shadow_type": "3D"}, "unknown_parameter"),
    ({"scale": "5%"}, "invalid_scale"),
    ({"scale": "half"}, "invalid_scale"),
    ({"scale": "nan%"}, "invalid_scale"),
    ({"position": "left"}, "invalid_position"),
    ({"position": "120%"}, "invalid_position"),
    ({"roi": "10 20 30"}, "invalid_roi"),
    ({"roi": "50% 0% 10% 100%"}, "invalid_roi"),
    ({"roi": "0% 0% 100% 150%"}, "invalid_roi"),
    ({"type": "car"}, "invalid_type"),
    ({"type_level": "2"}, "invalid_type_level"),
    ({"semitransparency": "false"}, "invalid_semitransparency"),
    ({"crop": "true", "scale": "80%"}, "invalid_crop"),
    ({"preset": "poster"}, "invalid_preset"),
    ({"canvas_size": "2000"}, "invalid_preset"),
    ({"preset": "post", "canvas_size": "1000"}, "invalid_preset"),
    ({"preset": "product", "margin": "lots"}, "invalid_margin"),
    ({"preset": "sticker", "bg_color": "ff0000"}, "invalid_preset"),
    ({"preset": "sticker", "format": "jpg"}, "invalid_format"),
    ({"preset": "product", "scale": "50%"}, "invalid_scale"),
    ({"preset": "product", "position": "original"}, "invalid_position"),
    ({"preset": "sticker", "outline": "maybe"}, "invalid_outline"),
])
def test_unsupported_values_are_400_in_remove_bg_shape(make_api, fields, code):
    client = make_api()
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny, "JPEG")
    response = post(client, fields, files={"image_file": (tiny.getvalue(), "t.jpg")})
    assert response.status_code == 400
    error = response.get_json()["errors"][0]
    assert error["code"] == code and error["title"] and error["detail"], error


def test_roi_outside_the_photo_and_openapi(make_api, key_photo):
    client = make_api()
    response = post(client, {"roi": "5000px 5000px 6000px 6000px"}, files={"image_file": (key_photo, "key.jpg")})
    assert response.status_code == 400 and response.get_json()["errors"][0]["code"] == "invalid_roi"
    properties = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/removebg"]["post"]["requestBody"][
        "content"]["multipart/form-data"]["schema"]["properties"]
    for name in ("scale", "position", "roi", "preset", "canvas_size", "margin", "fit", "outline"):
        assert name in properties


def test_parameter_errors_in_the_callers_language(make_api):
    client = make_api()
    response = post(client, {"scale": "5%"}, headers={"Accept-Language": "zh-TW"})
    error = response.get_json()["errors"][0]
    assert response.status_code == 400 and error["code"] == "invalid_scale" and "10% 到 100%" in error["title"]
    assert error["detail"].startswith("scale=5%")  # the detail names the parameter for programs and logs
