"""The remove.bg-shaped API, health, readiness and metrics, through Flask's client and gunicorn."""
from __future__ import annotations

import base64
import contextlib
import io
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import tampered
from tests.damaged_files import DAMAGED_KINDS, damaged_file
from tests.gunicorn_server import GunicornServer




class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def local_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A loopback HTTP server for the duration of the block; yields its host:port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


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


def placement(response) -> tuple[int, int, int, int]:
    """remove.bg's X-Foreground-Top/Left/Width/Height of an answer."""
    return tuple(int(response.headers[f"X-Foreground-{side}"]) for side in ("Top", "Left", "Width", "Height"))


def visible_box(alpha: np.ndarray, at_least: int = 14) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero((alpha >= at_least).any(axis=1)), np.flatnonzero((alpha >= at_least).any(axis=0))
    return int(rows[0]), int(cols[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)  # top, left, w, h


def box_within(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    (top, left, width, height), (out_top, out_left, out_width, out_height) = inner, outer
    return (out_top <= top and out_left <= left and top + height <= out_top + out_height
            and left + width <= out_left + out_width)


def test_answers_say_where_the_subject_lies_as_remove_bg_documents(make_api, small_photo):
    client = make_api()
    photo = {"image_file": (small_photo, "troll.jpg")}
    plain = post(client, files=photo)
    assert plain.headers["X-Credits-Charged"] == "0"  # remove.bg's header; nothing is charged here
    top, left, width, height = placement(plain)
    alpha = np.asarray(Image.open(io.BytesIO(plain.data)))[:, :, 3]
    assert 0 < width < alpha.shape[1] and 0 < height <= alpha.shape[0]  # the troll (head to toe), not the photo
    # The box of alpha above 0.05 (5 %): in 8 bits it holds every pixel of 14/255 and more and none
    # below 13/255 (a pixel of exactly 13 may be either side of 0.05).
    assert box_within(visible_box(alpha, 14), (top, left, width, height))
    assert box_within((top, left, width, height), visible_box(alpha, 13))
    outside = np.ones_like(alpha, dtype=bool)
    outside[top:top + height, left:left + width] = False
    assert alpha[outside].max(initial=0) <= 13  # nothing shows outside it but a faint fringe

    # Composited, the subject is where the cutout has it; the JSON variant carries the same numbers.
    on_red = post(client, {"bg_color": "ff0000", "format": "jpg"}, files=photo, headers={"Accept": "application/json"})
    data = on_red.get_json()["data"]
    assert placement(on_red) == (top, left, width, height)
    assert [data[f"foreground_{side}"] for side in ("top", "left", "width", "height")] == [top, left, width, height]
    # Cropped to the subject with no margin, the subject fills the answer.
    cropped = post(client, {"crop": "true", "crop_margin": "0"}, files=photo)
    assert placement(cropped) == (0, 0, int(cropped.headers["X-Width"]), int(cropped.headers["X-Height"])) \
        == (0, 0, width, height)
    # Scaled to half the image and centred: the box is the subject's new place, not its old one.
    centred = post(client, {"scale": "50%"}, files=photo)
    new_top, new_left, new_width, new_height = placement(centred)
    image_width, image_height = int(centred.headers["X-Width"]), int(centred.headers["X-Height"])
    assert abs(max(new_width / image_width, new_height / image_height) - 0.5) < 0.02
    assert abs(new_left + new_width / 2 - image_width / 2) <= 1 and abs(new_top + new_height / 2 - image_height / 2) <= 1
    headers = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/removebg"]["post"]["responses"]["200"]["headers"]
    assert {"X-Foreground-Top", "X-Foreground-Left", "X-Foreground-Width", "X-Foreground-Height",
            "X-Credits-Charged"} <= set(headers)


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
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


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
        assert int(response.headers["Retry-After"]) >= 1
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.headers["Retry-After"] == "5"
    finally:
        release.set()


def test_image_url_from_an_allowlisted_host(make_api, small_photo):
    class Handler(QuietHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(small_photo)))
            self.end_headers()
            self.wfile.write(small_photo)

    with local_server(Handler) as host:
        client = make_api(fetch_allowlist=(host,))
        response = post(client, {"image_url": f"http://{host}/photo.jpg", "format": "png"})
        assert response.status_code == 200 and Image.open(io.BytesIO(response.data)).mode == "RGBA"


def test_health_metrics_openapi_and_page(make_api):
    client = make_api()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    document = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/removebg" in document["paths"] and document["openapi"].startswith("3.")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "cutout_queue_depth 0" in metrics
    page = client.get("/")
    assert page.status_code == 200 and b"/page/jobs" in page.data
    # No CDN: nothing loads from another host (the og: tags name absolute URLs, for link previews only).
    assert not re.search(rb'(src|href)="(https?:)?//|url\((https?:)?//|@import', page.data)
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


@pytest.mark.parametrize("kind", DAMAGED_KINDS)
def test_damaged_files_answer_cant_read(make_api, small_photo, kind):
    client = make_api()
    damaged = damaged_file(kind)
    response = post(client, files={"image_file": (damaged, "damaged.img")})
    assert response.status_code == 400 and response.get_json()["errors"][0]["code"] == "corrupt"
    as_background = post(client, files={"image_file": (small_photo, "t.jpg"), "bg_image_file": (damaged, "bg.img")})
    assert as_background.status_code == 400
    assert as_background.get_json()["errors"][0]["code"] == "invalid_bg_image"


@pytest.mark.parametrize("margin", ["nan", "inf", "-inf", "1e400", "NaN%", "inf%", "-1", "501px", "60%", "ten"])
def test_bad_crop_margin_is_refused_before_any_download_or_decode(make_api, margin):
    hits = []

    class Handler(QuietHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

    with local_server(Handler) as host:
        client = make_api(fetch_allowlist=(host,))
        by_url = post(client, {"image_url": f"http://{host}/p.jpg", "crop": "true", "crop_margin": margin})
        by_file = post(client, {"crop": "true", "crop_margin": margin}, files={"image_file": (b"not decoded", "x.jpg")})
    for response in (by_url, by_file):
        assert response.status_code == 400 and response.get_json()["errors"][0]["code"] == "invalid_crop_margin"
    assert hits == [] and client.application.extensions["cutout"]["worker"].stats.succeeded == 0


def test_other_parameters_are_checked_up_front(make_api):
    client = make_api()
    for field, value, code in (("crop", "maybe", "invalid_crop"), ("add_shadow", "2", "invalid_add_shadow"),
                               ("bg_color", "notacolour", "invalid_bg_color"), ("size", "huge", "invalid_size")):
        response = post(client, {field: value}, files={"image_file": (b"not decoded", "x.jpg")})
        assert response.status_code == 400 and response.get_json()["errors"][0]["code"] == code


def test_every_error_is_json_and_big_b64_multipart_field_works(make_api):
    client = make_api()
    too_big = post(client, files={"image_file": (b"\xff" * (25 * 1024 * 1024), "big.jpg")})
    assert too_big.status_code == 413 and too_big.get_json()["errors"][0]["title"] == "File too large (limit 20 MB)"
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    over_request_limit = client.post("/api/v1/removebg", data=b"x" * (limit + 1), content_type="application/json")
    assert over_request_limit.status_code == 413 and over_request_limit.get_json()["errors"][0]["code"] == "file_too_large"
    assert client.get("/no/such/page").get_json()["errors"][0]["code"] == "not_found"
    assert client.get("/api/v1/removebg").status_code == 405 and client.get("/api/v1/removebg").is_json

    # A big base64 field is read and decoded (a damaged JPEG, so no model time is spent on it)
    # instead of Werkzeug's HTML 413 for form fields over its default 500 kB.
    encoded = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(600_000)).decode()
    response = post(client, {"image_file_b64": encoded})
    assert response.status_code == 400 and response.get_json()["errors"][0]["code"] == "corrupt"


def test_retry_after_lane_full_and_error_names(make_api, small_photo):
    client = make_api(api_rate_limit=1, api_concurrency=1)
    lane = client.application.extensions["cutout"]["lane"]
    with lane.enter():  # another request is waiting on the pipeline: the one lane slot is taken
        busy = post(client, files={"image_file": (small_photo, "t.jpg")})
    assert busy.status_code == 503 and busy.get_json()["errors"][0]["code"] == "busy"
    assert int(busy.headers["Retry-After"]) >= 1
    limited = post(client, files={"image_file": (small_photo, "t.jpg")})
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60

    client = make_api()
    bad_bg = post(client, {"bg_image_url": "http://127.0.0.1:9/bg.jpg"}, files={"image_file": (small_photo, "t.jpg")})
    assert bad_bg.status_code == 400 and bad_bg.get_json()["errors"][0]["code"] == "bg_url_blocked"
    assert "bg_image_url" in bad_bg.get_json()["errors"][0]["title"]


def test_result_tokens_for_keys_outside_the_store_are_404(make_api):
    client = make_api()
    signer = client.application.extensions["cutout"]["signer"]
    for key in ("../secret.key", "../../etc/passwd", "results"):
        response = client.get(f"/r/{signer.sign(key)}/x.png")
        assert response.status_code in (404, 410) and response.is_json
    assert client.get(f"/r/{signer.sign('../secret.key')}/x").status_code == 404


def test_early_answers_with_unread_bodies_never_stall_the_server(tmp_path):
    # gunicorn closes a connection whose body was left unread on its event-loop thread, lingering
    # up to 2 s for the client; a client pausing after a refusal (as Retry-After asks) then stalls
    # every other connection. The app reads such bodies itself, so health checks never wait.
    server = GunicornServer({"CUTOUT_DATA_DIR": str(tmp_path / "var"), "CUTOUT_API_KEYS": "right-key",
                             "CUTOUT_WARM_UP": "0"}).start(wait_ready=False)
    health: list[float] = []

    def refused_client():
        session = requests.Session()  # kept open while pausing, like a client honouring Retry-After
        # 64-128 kB: gunicorn drains 64 kB itself, then waits for the rest and the client's close.
        refused = session.post(server.base_url + "/api/v1/removebg", headers={"X-Api-Key": "wrong"},
                               files={"image_file": ("p.jpg", b"\xff" * 100_000)}, timeout=10)
        assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "auth_failed"
        time.sleep(2.2)

    try:
        client = threading.Thread(target=refused_client)
        client.start()
        while client.is_alive():
            started = time.monotonic()
            assert requests.get(server.base_url + "/healthz", timeout=10).status_code == 200
            health.append(time.monotonic() - started)
            time.sleep(0.1)
    finally:
        server.stop()
    assert max(health) < 0.5, max(health)  # was up to 2 s


def test_a_photo_without_a_subject_is_remove_bgs_unknown_foreground_error(make_api):
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank, "JPEG")
    client = make_api()
    response = post(client, files={"image_file": (blank.getvalue(), "blank.jpg")})
    assert response.status_code == 400
    error = response.get_json()["errors"][0]
    assert error["code"] == "unknown_foreground" and "foreground" in error["title"]


@pytest.mark.parametrize("trusted, separate_buckets", [(0, False), (1, True)])
def test_rate_limit_sees_the_real_client_only_behind_trusted_proxies(make_api, trusted, separate_buckets):
    client = make_api(api_rate_limit=1, trusted_proxies=trusted)
    first = post(client, headers={"X-Forwarded-For": "203.0.113.7"})  # no image: 400 after the limit check
    assert first.status_code == 400
    other_visitor = post(client, headers={"X-Forwarded-For": "198.51.100.9"})
    # Untrusted, the header is ignored (anyone could send it) and both share the proxy's bucket.
    assert (other_visitor.status_code == 400) is separate_buckets
    assert post(client, headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 429


def test_the_page_needs_no_api_key_and_gets_its_own_quota(make_api):
    import re

    client = make_api(api_keys=("secret-key",), page_rate_limit=1)
    html = client.get("/").get_data(as_text=True)
    token = re.search(r'name="cutout-page-token" content="([^"]+)"', html).group(1)
    # The page's pass gets past the key check (no image sent: 400, not 403) ...
    assert post(client, headers={"X-Page-Token": token}).status_code == 400
    # ... within the page's own per-visitor quota ...
    assert post(client, headers={"X-Page-Token": token}).status_code == 429
    # ... and a forged or tampered pass is no key at all.
    assert post(client, headers={"X-Page-Token": tampered(token)}).status_code == 403
    assert post(client, headers={"X-Page-Token": "made-up"}).status_code == 403


def test_every_error_code_the_api_and_page_send_has_a_zh_tw_title(make_api):
    import re
    from pathlib import Path

    from bot.fetch import FetchError
    from bot.web.api_titles import URL_FIELDS, URL_REASONS, ZH_TW_TITLES

    web = Path(__file__).resolve().parents[2] / "bot" / "web"
    source = "\n".join(path.read_text() for path in web.glob("*.py"))
    literal = set(re.findall(r'ApiError\(\s*\d+,[^\n]*?"([a-z_]+)"(?:,|\))', source))
    booleans = {f"invalid_{name}" for name in re.findall(r'boolean\(values, "([a-z_]+)"\)', source)}
    assert "missing_source" in literal and "expired" in literal and booleans  # the scan sees the codes
    assert not (literal | booleans) - set(ZH_TW_TITLES), "codes without a zh-TW title"
    fetch = Path(__file__).resolve().parents[2] / "bot" / "fetch.py"
    reasons = set(re.findall(r'FetchError\("([a-z_]+)"', fetch.read_text()))
    assert reasons and reasons <= set(URL_REASONS) and {"url_", "bg_url_"} == set(URL_FIELDS)
    assert issubclass(FetchError, ValueError)
    client = make_api()
    blocked = post(client, {"image_url": "http://127.0.0.1:9/photo.jpg"}, headers={"Accept-Language": "zh-TW"})
    error = blocked.get_json()["errors"][0]
    assert error["code"] == "url_blocked" and error["title"].startswith("照片網址無法使用")


def test_error_titles_follow_accept_language_and_keep_their_codes(make_api):
    client = make_api()
    english = post(client, headers={"Accept-Language": "en-US,en;q=0.9"}).get_json()["errors"][0]
    chinese = post(client, headers={"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.5"}).get_json()["errors"][0]
    assert english["code"] == chinese["code"] == "missing_source"
    assert english["title"].startswith("No image given") and "沒有收到照片" in chinese["title"]
    upload = post(client, files={"image_file": (b"\xff" * (25 << 20), "big.jpg")}, headers={"Accept-Language": "zh-TW"})
    assert upload.status_code == 413 and "檔案太大了（上限 20 MB）" in upload.get_json()["errors"][0]["title"]
    body_limit = client.application.config["MAX_CONTENT_LENGTH"]
    whole_body = client.post("/api/v1/removebg", data=b"x" * (body_limit + 1), content_type="application/json",
                             headers={"Accept-Language": "zh-TW"})
    assert whole_body.status_code == 413 and "檔案太大了" in whole_body.get_json()["errors"][0]["title"]
