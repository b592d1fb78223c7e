"""The web page's job routes through Flask's client: progress, previews, composites, downloads, errors."""
from __future__ import annotations

import io
import json
import re
import threading
import time
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from bot.web.page_jobs import PageJobs, download_name, upload_stem
from pipeline.cutout import CutoutOptions
from pipeline.worker import PipelineWorker
from tests.conftest import jpeg_bytes, shared_image


@pytest.fixture(scope="module")
def troll(small_photo) -> bytes:
    return small_photo


@pytest.fixture
def make_page(make_api):
    """A test client of a fresh app that has loaded the page once: it holds the page's pass."""
    def factory(**overrides):
        client = make_api(**overrides)
        html = client.get("/").get_data(as_text=True)
        client.token = re.search(r'name="cutout-page-token" content="([^"]+)"', html).group(1)
        return client

    return factory


def submit(client, data: bytes | None = None, name: str = "troll.jpg", headers: dict | None = None, **fields):
    form = dict(fields)
    if data is not None:
        form["image_file"] = (io.BytesIO(data), name)
    return client.post("/page/jobs", data=form, content_type="multipart/form-data",
                       headers={"X-Page-Token": client.token, **(headers or {})})


def wait(client, job_id: str, headers: dict | None = None, timeout: float = 120) -> tuple[dict, list[str]]:
    states: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/page/jobs/{job_id}", headers=headers or {}).get_json()
        if not states or states[-1] != status["state"]:
            states.append(status["state"])
        if status["state"] in ("done", "failed"):
            return status, states
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {states}")


def image(response) -> Image.Image:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return Image.open(io.BytesIO(response.data))


def test_a_photo_is_previewed_cut_out_and_downloaded_under_its_own_name(make_page, troll):
    client = make_page()
    accepted = submit(client, troll, "我的 troll.jpg")
    assert accepted.status_code == 202
    body = accepted.get_json()
    assert body["state"] in ("queued", "segmenting") and (body["width"], body["height"]) == (320, 225)
    job = body["id"]
    before = image(client.get(f"/page/jobs/{job}/original.jpg"))  # at once, before the cutout
    assert before.format == "JPEG" and before.size == (320, 225)

    status, states = wait(client, job)
    assert status["state"] == "done" and "errors" not in status
    assert states[-1] == "done" and set(states) <= {"queued", "segmenting", "refining", "saving", "done"}

    view = image(client.get(f"/page/jobs/{job}/view?bg=transparent"))
    assert view.mode == "RGBA" and view.size == (320, 225)
    full = client.get(f"/page/jobs/{job}/download")
    png = image(full)
    assert png.mode == "RGBA" and png.size == (320, 225)
    alpha = np.asarray(png)[:, :, 3]
    assert (alpha == 0).mean() > 0.2 and (alpha == 255).mean() > 0.2
    disposition = full.headers["Content-Disposition"]
    assert disposition.startswith("attachment") and f"filename*=UTF-8''{quote('我的-troll-cutout.png')}" in disposition
    jpg = client.get(f"/page/jobs/{job}/download?format=jpg")
    assert image(jpg).mode == "RGB" and "troll-cutout.jpg" in jpg.headers["Content-Disposition"]
    assert client.get(f"/page/jobs/{job}/download?format=gif").get_json()["errors"][0]["code"] == "invalid_format"


def test_composites_are_rendered_on_the_server_blur_fully_opaque(make_page, troll):
    client = make_page()
    job = submit(client, troll).get_json()["id"]
    assert client.get(f"/page/jobs/{job}/view?bg=blur").status_code in (200, 409)  # 409 while not ready
    wait(client, job)
    for choice in ("blur", "white", "studio", "#ff8800"):
        view = image(client.get(f"/page/jobs/{job}/view?bg={quote(choice)}"))
        assert view.format == "JPEG" and view.size == (320, 225)
        for fmt in ("png", "jpg"):
            response = client.get(f"/page/jobs/{job}/download?bg={quote(choice)}&format={fmt}")
            full = image(response)
            assert full.size == (320, 225) and "A" not in full.getbands()  # opaque: no alpha channel at all
            assert f"troll-cutout-{choice.strip('#')}.{fmt}" in response.headers["Content-Disposition"]
    blurred = np.asarray(image(client.get(f"/page/jobs/{job}/download?bg=blur&format=png")), dtype=np.float32)
    original = np.asarray(Image.open(io.BytesIO(troll)).convert("RGB"), dtype=np.float32)
    assert np.abs(blurred - original)[:10, :10].mean() > 1  # the background really is blurred
    # Rendered once, then served from the store.
    assert client.get(f"/page/jobs/{job}/view?bg=blur").data == client.get(f"/page/jobs/{job}/view?bg=blur").data

    own = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(own, "PNG")
    added = client.post(f"/page/jobs/{job}/background", data={"image_file": (io.BytesIO(own.getvalue()), "bg.png")},
                        content_type="multipart/form-data", headers={"X-Page-Token": client.token})
    background = added.get_json()["bg"]
    assert re.fullmatch(r"own-[0-9a-f]{12}", background)
    corner = np.asarray(image(client.get(f"/page/jobs/{job}/view?bg={background}")).convert("RGB"))[:5, :5].mean(axis=(0, 1))
    assert corner[1] > 150 and corner[0] < 60  # the visitor's green, where the background was

    bad = client.get(f"/page/jobs/{job}/view?bg=nonsense")
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["code"] == "invalid_bg"
    assert client.get(f"/page/jobs/{job}/view?bg=own-000000000000").status_code == 404


def test_queued_photos_say_how_many_are_ahead(make_page, troll):
    client = make_page()
    worker = client.application.extensions["cutout"]["worker"]
    started, release = threading.Event(), threading.Event()
    worker.submit(lambda: (started.set(), release.wait(30)))  # a chat photo being worked on
    started.wait(5)
    try:
        first = submit(client, troll).get_json()
        second = submit(client, troll, "second.jpg").get_json()
        assert (first["state"], first["position"]) == ("queued", 1)
        assert (second["state"], second["position"]) == ("queued", 2)
        assert client.get(f"/page/jobs/{second['id']}").get_json()["position"] == 2
    finally:
        release.set()
    assert wait(client, second["id"])[0]["state"] == "done"
    assert "position" not in client.get(f"/page/jobs/{first['id']}").get_json()


def test_a_photo_by_url_is_named_after_the_link(make_page, troll):
    from tests.web.test_api import QuietHandler, local_server

    class Handler(QuietHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(troll)))
            self.end_headers()
            self.wfile.write(troll)

    with local_server(Handler) as host:
        client = make_page(fetch_allowlist=(host,))
        accepted = submit(client, image_url=f"http://{host}/albums/7/beach-day.jpg?size=large")
        assert accepted.status_code == 202, accepted.get_json()
        job = accepted.get_json()["id"]
    assert wait(client, job)[0]["state"] == "done"
    assert "beach-day-cutout.png" in client.get(f"/page/jobs/{job}/download").headers["Content-Disposition"]


def test_heic_gets_a_jpeg_preview_and_a_result(make_page):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    photo = Image.open(shared_image("GT04")).convert("RGB")
    photo.thumbnail((320, 320))
    heic = io.BytesIO()
    photo.save(heic, "HEIF", quality=80)
    client = make_page()
    job = submit(client, heic.getvalue(), "IMG_0042.HEIC").get_json()["id"]
    preview = image(client.get(f"/page/jobs/{job}/original.jpg"))
    assert preview.format == "JPEG" and preview.size == photo.size
    assert wait(client, job)[0]["state"] == "done"
    assert "IMG_0042-cutout.png" in client.get(f"/page/jobs/{job}/download").headers["Content-Disposition"]


def test_no_subject_and_other_errors_are_the_apis_json_in_the_callers_language(make_page):
    client = make_page(max_image_bytes=200_000)
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank, "JPEG")
    job = submit(client, blank.getvalue(), "blank.jpg").get_json()["id"]
    status, _ = wait(client, job, headers={"Accept-Language": "zh-TW"})
    assert status["state"] == "failed" and status["status"] == 400
    error = status["errors"][0]
    assert error["code"] == "unknown_foreground" and "主體" in error["title"]
    english = client.get(f"/page/jobs/{job}", headers={"Accept-Language": "en"}).get_json()["errors"][0]
    assert "foreground" in english["title"]
    assert client.get(f"/page/jobs/{job}/download").status_code == 409  # nothing to download

    too_big = submit(client, b"\xff" * 300_000, headers={"Accept-Language": "zh-TW"})
    assert too_big.status_code == 413 and too_big.get_json()["errors"][0]["title"].startswith("檔案太大了")
    unreadable = submit(client, b"%PDF-1.4 not a photo", "x.pdf")
    assert unreadable.status_code == 415 and unreadable.get_json()["errors"][0]["code"] == "unsupported"
    private = submit(client, image_url="http://127.0.0.1:9/photo.jpg")
    assert private.status_code == 400 and private.get_json()["errors"][0]["code"] == "url_blocked"
    missing = client.get("/page/jobs/" + "0" * 32)
    assert missing.status_code == 404 and missing.get_json()["errors"][0]["code"] == "job_not_found"
    assert client.get("/page/jobs/../../secret.key/original.jpg").status_code == 404
    assert client.get("/page/jobs/not-a-job-id").get_json()["errors"][0]["code"] == "job_not_found"


def test_page_jobs_need_the_page_pass_and_share_the_page_quota(make_page):
    client = make_page(page_rate_limit=1, api_keys=("secret",))
    no_pass = client.post("/page/jobs", data={}, content_type="multipart/form-data")
    assert no_pass.status_code == 403 and no_pass.get_json()["errors"][0]["code"] == "auth_failed"
    assert submit(client).status_code == 400  # past the pass, no photo sent
    limited = submit(client)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    # The page's use of the API shares the same per-visitor quota.
    api = client.post("/api/v1/removebg", headers={"X-Page-Token": client.token})
    assert api.status_code == 429


def test_another_process_answers_from_the_stored_state(make_page, troll, small_side_pipeline):
    client = make_page()
    job = submit(client, troll).get_json()["id"]
    wait(client, job)
    shared = client.application.extensions["cutout"]
    other = PageJobs(shared["settings"], small_side_pipeline, PipelineWorker(), CutoutOptions(), shared["blobs"],
                     shared["metrics"])
    stored = other.get(job)
    assert stored is not None and stored.state == "done" and stored.name == "troll"
    assert other.render(stored, "white", "jpg", full=True)[1] == "image/jpeg"
    # A job whose process went away before finishing it is reported lost, not queued forever.
    record = json.loads(shared["blobs"].get(f"results/page-{job}/state.json"))
    record.update(state="queued", created=time.time() - 3600)
    shared["blobs"].put(f"results/page-{job}/state.json", json.dumps(record).encode())
    lost = other.get(job)
    assert lost.state == "failed" and lost.error["code"] == "job_lost"
    assert other.get("f" * 32) is None and other.get("../x") is None


def test_the_final_state_is_stored_before_this_process_reports_it(make_page, troll, monkeypatch):
    # A page told "done" here may ask another process next (CI 2026-11-27 found it still "queued" there).
    client = make_page()
    shared = client.application.extensions["cutout"]
    blobs, jobs = shared["blobs"], shared["page_jobs"]
    reported_while_writing: list[tuple[str, str]] = []
    put = blobs.put

    def watching_put(key: str, data: bytes, *args, **kwargs):
        if key.endswith("/state.json"):
            written = json.loads(data)
            if written["state"] in ("done", "failed"):
                reported_while_writing.append((written["state"], jobs.get(written["id"]).state))
        return put(key, data, *args, **kwargs)

    monkeypatch.setattr(blobs, "put", watching_put)
    job = submit(client, troll).get_json()["id"]
    status, _ = wait(client, job)
    assert status["state"] == "done"
    assert reported_while_writing and reported_while_writing[-1][0] == "done"
    assert all(state not in ("done", "failed") for _, state in reported_while_writing), reported_while_writing


def test_the_pipeline_reports_each_stage(small_side_pipeline):
    stages = []
    photo = np.asarray(Image.open(io.BytesIO(jpeg_bytes(shared_image("GT04"), 160))), dtype=np.float32) / 255
    small_side_pipeline.cutout_batch([photo], CutoutOptions(matting=False),
                               on_stage=lambda index, stage: stages.append((index, stage)))
    assert stages == [(0, "segmenting"), (0, "refining")]


def test_worker_position_counts_the_tasks_ahead():
    worker = PipelineWorker(queue_size=8)
    first = worker.submit(lambda: None)
    second = worker.submit_batchable("page", 1, lambda items: items)
    assert worker.position(first) == 0 and worker.position(second) == 1
    tasks = worker.dequeue_job(block=False)  # the first is now being worked on
    assert worker.position(first) is None and worker.position(second) == 1
    worker.perform_job(tasks)
    assert worker.position(second) == 0
    worker.work(burst=True)
    assert worker.position(second) is None and second.result() == 1


@pytest.mark.parametrize("filename, stem", [("IMG_0042.HEIC", "IMG_0042"), ("我的 照片.jpg", "我的-照片"),
                                            ("../../etc/passwd", "passwd"), ("C:\\photos\\cat.png", "cat"),
                                            ("", "photo"), (".jpg", "jpg"), ("a/b/", "photo"),
                                            ("x" * 100 + ".jpg", "x" * 60)])
def test_download_names_follow_the_upload(filename, stem):
    assert upload_stem(filename) == stem
    assert download_name(stem, "transparent", "png") == f"{stem}-cutout.png"
    assert download_name(stem, "#FF8800", "jpg") == f"{stem}-cutout-ff8800.jpg"


def test_a_page_photo_is_fixed_in_the_editor_and_the_page_then_draws_the_fix(make_page, troll):
    from urllib.parse import urlsplit

    client = make_page()
    job = submit(client, troll).get_json()["id"]
    status, _ = wait(client, job)
    assert status["version"] == 0
    before = np.asarray(image(client.get(f"/page/jobs/{job}/download")))[:, :, 3]
    # Only the page that sent the photo is given its editor link.
    edit = f"/page/jobs/{job}/edit"
    assert client.post(edit, json={}).status_code == 403  # no page pass
    stranger = client.get("/").get_data(as_text=True)
    other_pass = re.search(r'name="cutout-page-token" content="([^"]+)"', stranger).group(1)
    refused = client.post(edit, json={}, headers={"X-Page-Token": other_pass})
    assert refused.status_code == 403 and refused.get_json()["errors"][0]["code"] == "not_yours"
    linked = client.post(edit, json={"lang": "en"}, headers={"X-Page-Token": client.token})
    assert linked.status_code == 200
    url = urlsplit(linked.get_json()["url"])
    assert url.path.startswith("/edit/") and url.query == "lang=en"
    again = client.post(edit, json={}, headers={"X-Page-Token": client.token}).get_json()["url"]
    assert urlsplit(again).path == url.path  # one editable record per photo
    page = client.get(url.path + "?lang=en").get_data(as_text=True)
    assert '"web": true' in page and '"save_web": "Save"' in page

    # Erase a band across the troll's middle; the save stays on the page (no chat to send to).
    rows = np.flatnonzero((before > 128).any(axis=1))
    y = int((rows[0] + rows[-1]) // 2)
    stroke = {"type": "stroke", "mode": "erase", "radius": 6, "points": [[0, y], [319, y]]}
    saved = client.post(url.path + "/save", json={"marks": [stroke]})
    assert saved.get_json() == {"version": 1, "sent": False, "web": True}
    assert client.get(f"/page/jobs/{job}").get_json()["version"] == 1

    after = np.asarray(image(client.get(f"/page/jobs/{job}/download?v=1")))[:, :, 3]
    assert before[y].max() == 255 and after[y].max() == 0  # the band is gone from the download...
    far = np.abs(after[: y - 12].astype(int) - before[: y - 12])
    assert far.mean() < 2 and (far > 64).mean() < 0.005  # ...and far from it little changed (8-bit round trips)
    view = np.asarray(image(client.get(f"/page/jobs/{job}/view?bg=transparent&v=1")))[:, :, 3]
    assert view[y].max() == 0  # the page's own picture too
    white = np.asarray(image(client.get(f"/page/jobs/{job}/download?bg=white&format=png&v=1")).convert("L"))
    assert white[y].min() > 240  # composites are drawn from the fix
    # Another process (its own PageJobs over the same store and job table) serves the same fix.
    shared = client.application.extensions["cutout"]
    other = PageJobs(shared["settings"], shared["pipeline"], PipelineWorker(), CutoutOptions(), shared["blobs"],
                     shared["metrics"], shared["jobs"])
    data, _ = other.render(other.get(job), "transparent", "png", full=True)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)))[:, :, 3], after)
