"""The remove.bg-shaped API, health, readiness and metrics, through Flask's client and gunicorn."""
from __future__ import annotations

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests
from PIL import Image

from app import create_app
from settings import Settings
from tests.conftest import jpeg_bytes, shared_image
from tests.gunicorn_server import GunicornServer


@pytest.fixture(scope="module")
def small_photo() -> bytes:
    return jpeg_bytes(shared_image("GT04"), 320)


@pytest.fixture
def make_api(tmp_path, real_pipeline):
    apps = []

    def factory(**overrides):
        values = dict(data_dir=tmp_path / "var", warm_up=False)
        values.update(overrides)
        app = create_app(Settings(**values), pipeline=real_pipeline)
        apps.append(app)
        return app.test_client()

    yield factory
    for app in apps:
        app.extensions["cutout"]["worker"].stop()


def post(client, data=None, files=None, headers=None):
    form = dict(data or {})
    for name, (payload, filename) in (files or {}).items():
        form[name] = (io.BytesIO(payload), filename)
    return client.post("/api/v1/removebg", data=form, headers=headers or {}, content_type="multipart/form-data")


def test_png_cutout_json_variant_and_alpha_channel(make_api, small_photo):
    client = make_api()
    response = post(client, files={"image_file": (small_photo, "troll.jpg")})
    assert response.status_code == 200 and response.mimetype == "image/png"
    image = Image.open(io.BytesIO(response.data))
    assert image.mode == "RGBA" and image.size == (int(response.headers["X-Width"]), int(response.headers["X-Height"]))
    alpha = np.asarray(image)[:, :, 3]
    assert (alpha == 0).mean() > 0.2 and (alpha == 255).mean() > 0.2

    as_json = post(client, {"channels": "alpha", "image_file_b64": base64.b64encode(small_photo).decode()},
                   headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    mask = Image.open(io.BytesIO(base64.b64decode(as_json.get_json()["data"]["result_b64"])))
    assert mask.mode == "L"
    assert np.abs(np.asarray(mask, dtype=np.int16) - alpha).mean() < 3  # same pipeline, same alpha


def test_json_body_like_remove_bg_clients_send(make_api, small_photo):
    client = make_api()
    response = client.post("/api/v1/removebg", json={"image_file_b64": base64.b64encode(small_photo).decode(),
                                                     "size": "preview", "format": "png", "crop": False})
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert client.post("/api/v1/removebg", json=["not", "an", "object"]).status_code == 400


def test_jpg_on_colour_with_crop(make_api, small_photo):
    client = make_api()
    response = post(client, {"format": "jpg", "bg_color": "ff0000", "crop": "true", "crop_margin": "10px"},
                    files={"image_file": (small_photo, "troll.jpg")})
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    pixels = np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB"), dtype=np.float32)
    corner = pixels[:8, :8].reshape(-1, 3).mean(axis=0)
    assert corner[0] > 200 and corner[1] < 60 and corner[2] < 60  # red where the background was
    original = Image.open(io.BytesIO(small_photo))
    assert pixels.shape[0] <= original.height and pixels.shape[1] <= original.width


def test_errors_have_remove_bg_shape_and_status(make_api, small_photo):
    client = make_api(max_image_bytes=200_000)
    missing = post(client)
    assert missing.status_code == 400 and missing.get_json()["errors"][0]["code"] == "missing_source"
    corrupt = post(client, files={"image_file": (b"\xff\xd8\xff\xe0garbage", "x.jpg")})
    assert corrupt.status_code == 400 and corrupt.get_json()["errors"][0]["title"]
    unsupported = post(client, files={"image_file": (b"%PDF-1.4 not an image at all", "x.pdf")})
    assert unsupported.status_code == 415
    too_big = post(client, files={"image_file": (b"\xff" * 300_000, "big.jpg")})
    assert too_big.status_code == 413
    bad_param = post(client, {"format": "zip"}, files={"image_file": (small_photo, "t.jpg")})
    assert bad_param.status_code == 400 and bad_param.get_json()["errors"][0]["code"] == "invalid_format"
    private_url = post(client, {"image_url": "http://127.0.0.1:9/photo.jpg"})
    assert private_url.status_code == 400


def test_api_keys_and_rate_limit(make_api, small_photo):
    client = make_api(api_keys=("secret-key",), api_rate_limit=2)
    assert post(client, files={"image_file": (small_photo, "t.jpg")}).status_code == 403
    assert post(client, files={"image_file": (small_photo, "t.jpg")}, headers={"X-Api-Key": "nope"}).status_code == 403
    ok = post(client, {"size": "preview"}, files={"image_file": (small_photo, "t.jpg")}, headers={"X-Api-Key": "secret-key"})
    assert ok.status_code == 200
    post(client, {"format": "zip"}, headers={"X-Api-Key": "secret-key"})
    limited = post(client, files={"image_file": (small_photo, "t.jpg")}, headers={"X-Api-Key": "secret-key"})
    assert limited.status_code == 429


def test_queue_full_answers_503(make_api, small_photo):
    client = make_api(queue_size=1)
    worker = client.application.extensions["cutout"]["worker"]
    started, release = threading.Event(), threading.Event()
    worker.submit(lambda: (started.set(), release.wait(30)))
    started.wait(5)
    worker.submit(lambda: None)
    try:
        response = post(client, files={"image_file": (small_photo, "t.jpg")})
        assert response.status_code == 503 and response.get_json()["errors"][0]["code"] == "queue_full"
        assert client.get("/readyz").status_code == 503
    finally:
        release.set()


def test_image_url_from_an_allowlisted_host(make_api, small_photo):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(small_photo)))
            self.end_headers()
            self.wfile.write(small_photo)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        client = make_api(fetch_allowlist=(host,))
        response = post(client, {"image_url": f"http://{host}/photo.jpg", "format": "png"})
        assert response.status_code == 200 and Image.open(io.BytesIO(response.data)).mode == "RGBA"
    finally:
        server.shutdown()


def test_health_metrics_openapi_and_page(make_api):
    client = make_api()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    document = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/removebg" in document["paths"] and document["openapi"].startswith("3.")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "cutout_queue_depth 0" in metrics
    page = client.get("/")
    assert page.status_code == 200 and b"/api/v1/removebg" in page.data and b"http" not in page.data.split(b"<script>")[0].replace(b"http-equiv", b"")
    assert client.get("/backdrops/studio.jpg").mimetype == "image/jpeg"


def test_api_through_gunicorn_is_byte_correct(tmp_path, small_photo, real_pipeline):
    server = GunicornServer({"CUTOUT_DATA_DIR": str(tmp_path / "var")}).start()
    try:
        response = requests.post(server.base_url + "/api/v1/removebg", files={"image_file": ("t.jpg", small_photo)},
                                 data={"size": "auto"}, timeout=120)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        assert int(response.headers["Content-Length"]) == len(response.content)
        image = Image.open(io.BytesIO(response.content))
        image.verify()
        assert requests.get(server.base_url + "/metrics", timeout=5).text.count('outcome="finished"') == 1
    finally:
        server.stop()
