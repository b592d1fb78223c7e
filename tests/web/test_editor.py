"""The editor from chat (issue 16): the cutout card's Edit link, the editor's routes, saved versions
sent back to the chat, 只留主體, and links that are refused. Real app, real model, the LINE double."""
from __future__ import annotations

import io
import json
from html import unescape
import time
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from app import create_app
from bot.channels.messenger import card_attachment
from bot.i18n import say
from bot.replies import Card, Choice, Link, Picture
from bot.results import count_objects, grey_png, mask_png, object_parts, read_mask_png
from pipeline.editing.regions import NO_EVIDENCE
from settings import Settings
from tests.channel_drivers import check_line_message, flat_line_message
from tests.conftest import ALPHAMATTING, LINE_SECRET, LINE_TOKEN, line_body, line_signature, shared_image
from tests.doubles.line_platform import LinePlatformDouble


def two_objects_jpeg(name: str = "GT18", background=(235, 235, 230), max_side: int = 480) -> bytes:
    """Two copies of an alphamatting.com subject side by side on a plain wall: a photo the model
    cuts out as two separate objects (a seller wanted one)."""
    shared_image(name)
    photo = np.asarray(Image.open(ALPHAMATTING / "input" / f"{name}.png").convert("RGB"), dtype=np.float32) / 255
    truth = np.asarray(Image.open(ALPHAMATTING / "gt_alpha" / f"{name}.png").convert("L"), dtype=np.float32)[..., None] / 255
    height, width = truth.shape[:2]
    canvas = np.ones((height, 2 * width, 3), np.float32) * np.array(background, np.float32) / 255
    for index in range(2):
        part = canvas[:, index * width:(index + 1) * width]
        part[:] = photo * truth + part * (1 - truth)
    image = Image.fromarray(np.round(canvas * 255).astype(np.uint8))
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def two_objects() -> bytes:
    return two_objects_jpeg()


@pytest.fixture
def line_double():
    double = LinePlatformDouble(LINE_TOKEN).start()
    yield double
    double.stop()


@pytest.fixture
def make_app(tmp_path, line_double, small_side_pipeline):
    apps = []

    def factory(**overrides):
        values = dict(data_dir=tmp_path / "var", public_base_url="https://cutout.test", line_channel_secret=LINE_SECRET,
                      line_channel_access_token=LINE_TOKEN, line_api_base_url=line_double.base_url, warm_up=False)
        values.update(overrides)
        app = create_app(Settings(**values), pipeline=small_side_pipeline)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["cutout"]["worker"].stop()
        app.extensions["cutout"]["conversation"].io.shutdown(wait=True)


def post_event(client, double, fixture: str, **changes) -> dict:
    body, event = line_body(fixture, **changes)
    double.valid_reply_tokens.add(event["replyToken"])
    assert client.post("/callback/line", data=body, headers={"X-Line-Signature": line_signature(body)}).status_code == 200
    return event


def send_photo(client, double, photo: bytes, user: str) -> dict:
    message_id = str(time.time_ns())
    double.add_content(message_id, photo)
    return post_event(client, double, "image_message.json", **{"message.id": message_id, "source.userId": user})


def messages(double, count: int) -> list[dict]:
    double.wait_for(lambda rs: sum(len(r.body["messages"]) for r in rs
                                   if r.path.endswith(("/reply", "/push")) and r.status == 200) >= count, 90)
    return [message for record in double.delivered() for message in record.body["messages"]]


def edit_link(message: dict) -> str:
    """The card's 修正去背 link: a button in the bubble's body, under the text."""
    [button] = [c for c in message["contents"]["body"]["contents"] if c["type"] == "button"]
    assert button["action"]["type"] == "uri" and button["action"]["label"] == "修正去背"
    return button["action"]["uri"]


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def png_alpha(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.getchannel("A") if image.mode == "RGBA" else image.convert("L"))


def test_edit_link_preview_save_and_the_corrected_cutout_pushed_to_the_chat(make_app, line_double, two_objects):
    app = make_app()
    client = app.test_client()
    send_photo(client, line_double, two_objects, user="Ueditor1")
    [card] = messages(line_double, 1)
    check_line_message(card)
    flat = flat_line_message(card)
    # Two separate objects: the quick fix leads the quick replies; the Edit link sits in the card.
    assert flat["choices"][0][0] == "只留主體" and flat["choices"][0][1].startswith("fix=main&job=")
    link = edit_link(card)
    assert link.startswith("https://cutout.test/edit/")

    editor = app.extensions["cutout"]["conversation"].editor
    asked, ask = [], editor.second_opinion
    editor.second_opinion = lambda photo: asked.append(photo.shape) or ask(photo)
    page = client.get(local(link))
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    # Opening the page asks the second opinion in the background, before any tap wants it.
    deadline = time.time() + 30
    while not asked and time.time() < deadline:
        time.sleep(0.05)
    assert len(asked) == 1
    html = page.get_data(as_text=True)
    assert 'lang="zh-Hant-TW"' in html and "儲存並傳到聊天室" in html and "只留主體" in html
    base = urlsplit(link).path
    photo = Image.open(io.BytesIO(client.get(base + "/photo.jpg").data))
    width, height = photo.size
    original = client.post(base + "/alpha.png", json={"marks": []})
    assert original.status_code == 200 and original.headers["Content-Type"] == "image/png"
    before = png_alpha(original.data)
    assert before.shape == (height, width) and (before > 128).mean() > 0.05

    # Drop the smaller object with one tap inside it, then erase a strip across the main one.
    labels, parts, step = object_parts(before)
    assert len(parts) == 2 and step == 1
    main, other = labels == parts[0], labels == parts[1]
    depth = ndimage.distance_transform_edt(other)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    tap = {"type": "tap", "mode": "erase", "x": float(x), "y": float(y)}
    rows, columns = np.nonzero(main)
    strip_y = int(np.median(rows))
    stroke = {"type": "stroke", "mode": "erase", "radius": 4.0,
              "points": [[float(columns.min()), float(strip_y)], [float(columns.max()), float(strip_y)]]}
    started = time.monotonic()
    preview = client.post(base + "/alpha.png", json={"marks": [tap, stroke]})
    assert time.monotonic() - started < 1.5  # the page's budget for one answer
    after = png_alpha(preview.data)
    assert (after[other] > 128).mean() < 0.05  # the tapped object is gone whole
    assert (after[strip_y - 2:strip_y + 3][main[strip_y - 2:strip_y + 3]] > 128).sum() == 0  # the strip is clear
    assert (after[main] > 128).mean() > 0.7  # the rest of the main object stays
    assert client.post(base + "/alpha.png", json={"marks": [{"type": "tap", "x": -5, "y": 1, "mode": "keep"}]}
                       ).status_code == 400

    saved = client.post(base + "/save", json={"marks": [tap, stroke]})
    assert saved.status_code == 200 and saved.get_json() == {"version": 1, "sent": True}
    pushed = messages(line_double, 2)[1]
    check_line_message(pushed)
    [push] = [r for r in line_double.delivered() if r.path.endswith("/push")]
    assert push.body["to"] == "Ueditor1"
    corrected = flat_line_message(pushed)
    assert corrected["title"] == "修正好了！" and "只留主體" not in [label for label, _ in corrected["choices"]]
    assert any(data.startswith("bg=white") for _, data in corrected["choices"])
    assert edit_link(pushed).startswith("https://cutout.test/edit/")
    # Save pressed again with nothing changed: the same version, no second push (the composite below
    # is the chat's next message).
    again = client.post(base + "/save", json={"marks": [tap, stroke]})
    assert again.get_json() == {"version": 1, "sent": True, "repeated": True}
    full = png_alpha(client.get(local(corrected["image"])).data)  # the new version, full size
    full_before = png_alpha(client.get(local(flat["image"])).data)
    assert full.shape == full_before.shape == other.shape and count_objects(full_before) == 2
    assert (full[other] > 128).mean() < 0.05 and (full[main] > 128).mean() > 0.7

    # New backgrounds now use the corrected version: the dropped object is white on white.
    white = next(data for _, data in corrected["choices"] if data.startswith("bg=white"))
    post_event(client, line_double, "postback.json", **{"postback.data": white, "source.userId": "Ueditor1"})
    composite = flat_line_message(messages(line_double, 3)[2])
    pixels = np.asarray(Image.open(io.BytesIO(client.get(local(composite["image"])).data)).convert("RGB"), np.float32)
    dropped = (full_before > 250) & (full < 5)
    assert dropped.mean() > 0.05 and pixels[dropped].mean() > 245

    # Opening the editor again shows the saved marks (undo continues across visits).
    again = client.get(local(link)).get_data(as_text=True)
    assert '"mode": "erase", "x"' in again


def test_a_results_second_opinion_is_kept_so_another_process_does_not_ask_again(make_app, line_double, two_objects):
    """The page's opening asks U^2-Net-p once; a process that loads the result later (a restart,
    another worker, a grid the cache dropped) reads it back, and edits come out the same."""
    from bot.edits import SECOND_OPINION_FILE

    first = make_app()
    client = first.test_client()
    send_photo(client, line_double, two_objects, user="Ueditor5")
    [card] = messages(line_double, 1)
    link = edit_link(card)
    editor = first.extensions["cutout"]["conversation"].editor
    asked, ask = [], editor.second_opinion
    editor.second_opinion = lambda photo: asked.append(photo.shape) or ask(photo)
    assert client.get(local(link)).status_code == 200
    blobs = first.extensions["cutout"]["blobs"]
    deadline = time.time() + 30
    while not (asked and any(key.endswith(SECOND_OPINION_FILE) for key in stored_keys(blobs))) and time.time() < deadline:
        time.sleep(0.05)
    assert len(asked) == 1
    # A keep tap on the wall, where ISNet saw nothing: the tap asks the second opinion.
    base = urlsplit(link).path
    keep = {"marks": [{"type": "tap", "mode": "keep", "x": 3.0, "y": 3.0}]}
    before = png_alpha(client.post(base + "/alpha.png", json=keep).data)
    assert len(asked) == 1

    second = make_app()
    other = second.extensions["cutout"]["conversation"].editor
    asked_again, ask_again = [], other.second_opinion
    other.second_opinion = lambda photo: asked_again.append(photo.shape) or ask_again(photo)
    after = png_alpha(second.test_client().post(base + "/alpha.png", json=keep).data)
    assert asked_again == [] and np.array_equal(before, after)


def test_saves_in_two_processes_get_their_own_versions_and_a_stored_but_unsent_version_is_sent_once(
        make_app, line_double, two_objects):
    """Two processes (gunicorn workers) save different marks on one result at the same moment: two
    versions, numbered apart, each with its own files, each pushed once. A version stored by a
    process that stopped before sending it goes to the chat when Save is pressed again, once."""
    import threading

    first, second = make_app(), make_app()
    send_photo(first.test_client(), line_double, two_objects, user="Ueditor7")
    [card] = messages(line_double, 1)
    token = urlsplit(edit_link(card)).path.rsplit("/", 1)[1]
    base = f"/edit/{token}"
    conversation = first.extensions["cutout"]["conversation"]
    result_id = conversation.edit_links.job_id(token)
    for app in (first, second):  # slow file writes: each save holds its files while the other numbers
        blobs = app.extensions["cutout"]["conversation"].editor.blobs
        blobs.put = lambda key, data, put=blobs.put: (time.sleep(0.4) if key.endswith("/cutout.png") else None) \
            or put(key, data)
    before = png_alpha(first.test_client().post(base + "/alpha.png", json={"marks": []}).data)
    labels, parts, _ = object_parts(before)
    columns = {name: int(np.median(np.nonzero(labels == part)[1])) for name, part in zip(("bigger", "smaller"), parts)}
    marks = {name: [{"type": "stroke", "mode": "erase", "radius": 3.0,
                     "points": [[float(x), 0.0], [float(x), float(before.shape[0] - 1)]]}]
             for name, x in columns.items()}
    answers: dict[str, dict] = {}
    together = threading.Barrier(2)

    def save(app, name: str) -> None:
        client = app.test_client()
        together.wait()
        answers[name] = client.post(base + "/save", json={"marks": marks[name]}).get_json()

    threads = [threading.Thread(target=save, args=pair) for pair in ((first, "bigger"), (second, "smaller"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(answer["version"] for answer in answers.values()) == [1, 2]
    assert all(answer["sent"] is True for answer in answers.values())
    versions = conversation.jobs.get(result_id).result["versions"]
    assert [version["number"] for version in versions] == [1, 2]
    for version in versions:  # each version's own marks and files
        name = next(name for name, answer in answers.items() if answer["version"] == version["number"])
        assert version["marks"] == marks[name]
        alpha = png_alpha(conversation.blobs.get(version["cutout"]))
        other = next(x for key, x in columns.items() if key != name)
        assert alpha[:, columns[name]].max() == 0 and (alpha[:, other] > 128).any()
    assert versions[0]["cutout"] != versions[1]["cutout"]
    pushes = lambda: [r for r in line_double.delivered() if r.path.endswith("/push")]  # noqa: E731
    line_double.wait_for(lambda records: len(pushes()) >= 2, 60)

    # A third version stored, then the process stops before sending it: Save again sends it, once.
    stored = conversation.editor.save(result_id, [*marks["bigger"], *marks["smaller"]])
    assert stored["number"] == 3 and "repeated" not in stored
    again = second.test_client().post(base + "/save", json={"marks": [*marks["bigger"], *marks["smaller"]]})
    assert again.get_json() == {"version": 3, "sent": True, "repeated": True}
    line_double.wait_for(lambda records: len(pushes()) >= 3, 60)
    assert first.test_client().post(base + "/save", json={"marks": [*marks["bigger"], *marks["smaller"]]}
                                    ).get_json() == {"version": 3, "sent": True, "repeated": True}
    time.sleep(1.0)
    assert len(pushes()) == 3 and len(conversation.jobs.get(result_id).result["versions"]) == 3


def test_a_store_that_cannot_keep_the_second_opinion_still_gives_the_edit_its_answer(tmp_path, caplog):
    """Keeping the second opinion saves a model run later; a store that refuses the write (or the
    read) costs that run, never the edit's answer."""
    from types import SimpleNamespace

    from bot.edits import Editor
    from storage.files import LocalBlobStore

    class RefusingStore(LocalBlobStore):
        def put(self, key, data):
            raise OSError("disk full")

        def get(self, key):
            raise OSError("store unreachable")

    answer = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    asked = []
    editor = Editor(Settings(data_dir=tmp_path / "var"), jobs=None, blobs=RefusingStore(tmp_path / "blobs"),
                    second_opinion=lambda photo: asked.append(photo.shape) or answer)
    ask = editor._kept_second_opinion(SimpleNamespace(id="job1"), np.zeros((3, 4, 3), np.uint8))
    with caplog.at_level("WARNING", logger="bot.edits"):
        got = ask()
    assert asked == [(3, 4, 3)]
    np.testing.assert_allclose(got, np.round(answer * 255) / 255, atol=1e-6)  # the same 8-bit values as kept ones
    assert "not kept" in caplog.text and "unreadable" in caplog.text


def stored_keys(blobs) -> list[str]:
    root = blobs.path("results")
    return [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_main_object_only_from_the_chat(make_app, line_double, two_objects, monkeypatch):
    app = make_app()
    client = app.test_client()
    send_photo(client, line_double, two_objects, user="Ueditor2")
    [card] = messages(line_double, 1)
    label, data = flat_line_message(card)["choices"][0]
    assert label == "只留主體"
    post_event(client, line_double, "postback.json", **{"postback.data": data, "source.userId": "Ueditor2"})
    answer = messages(line_double, 2)[1]
    check_line_message(answer)
    fixed = flat_line_message(answer)
    assert fixed["title"] == "修正好了！"
    alpha = png_alpha(client.get(local(fixed["image"])).data)
    assert count_objects(alpha) == 1 and (alpha > 128).mean() > 0.05
    # Versions are capped (each is files and, on LINE, a billed push): Save answers 429 past the cap.
    monkeypatch.setattr("bot.edits.MAX_VERSIONS", 1)
    refused = client.post(urlsplit(edit_link(answer)).path + "/save", json={"marks": []})
    assert refused.status_code == 429
    assert refused.get_json()["errors"][0] == {"code": "too_many_versions", "title": "Saved versions of one cutout: at most 1"}
    # Someone else's tap on that button changes nothing.
    post_event(client, line_double, "postback.json", **{"postback.data": data, "source.userId": "Uintruder"})
    assert flat_line_message(messages(line_double, 3)[2])["text"] == say("zh-TW", "unknown_choice")


def test_expired_and_tampered_editor_links_are_refused(make_app, line_double, portrait_jpeg):
    app = make_app()
    client = app.test_client()
    send_photo(client, line_double, portrait_jpeg, user="Ueditor3")
    [card] = messages(line_double, 1)
    assert [c for c in flat_line_message(card)["choices"] if c[0] == "只留主體"] == []  # one object: no quick fix
    link = edit_link(card)
    token = urlsplit(link).path.rsplit("/", 1)[1]
    assert client.get(local(link)).status_code == 200

    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    refused = client.get(f"/edit/{tampered}")
    assert refused.status_code == 404 and 'data-refused="invalid"' in refused.get_data(as_text=True)
    assert "這個連結無法使用" in refused.get_data(as_text=True)
    assert client.post(f"/edit/{tampered}/alpha.png", json={"marks": []}).status_code == 404
    assert client.post(f"/edit/{tampered}/save", json={"marks": []}).status_code == 404
    english = unescape(client.get(f"/edit/{tampered}?lang=en").get_data(as_text=True))
    assert "This link doesn't work" in english and 'lang="en"' in english

    conversation = app.extensions["cutout"]["conversation"]
    job_id = conversation.edit_links.job_id(token)
    job = conversation.jobs.get(job_id)
    # A link signed 8 days ago for a result kept 7 days.
    signed_at = time.time() - 8 * 86400
    expired = conversation.edit_links.signer.sign(f"edit:{job_id}", ttl_s=7 * 86400, now=signed_at)
    # The page speaks the chat's language (zh-TW here), whatever the browser prefers; ?lang= wins.
    gone = client.get(f"/edit/{expired}", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert gone.status_code == 410 and "這個連結已經過期了" in gone.get_data(as_text=True)
    assert "This link has expired" in client.get(f"/edit/{expired}?lang=en").get_data(as_text=True)
    assert client.post(f"/edit/{expired}/save", json={"marks": []}).status_code == 410

    # An editor link opens no file, and a file link opens no editor.
    assert client.get(f"/r/{token}").status_code in (404, 410)
    file_token = urlsplit(flat_line_message(card)["image"]).path.split("/")[2]
    assert client.get(f"/edit/{file_token}").status_code == 404
    # The result's files gone (the sweeper): the link says it expired.
    blobs = app.extensions["cutout"]["blobs"]
    blobs.delete(job.result["input"])
    assert client.get(local(link)).status_code == 410


def test_an_editor_link_expires_with_its_result_and_is_the_same_whenever_it_is_asked(tmp_path):
    """The token's expiry is the result's, to the second: links asked for at different moments of its
    life (a page asking twice, a card re-sent) are one link, and it is refused from that second on."""
    from bot.edits import EditLinks
    from storage.jobs import Job
    from storage.urls import ExpiredToken, UrlSigner

    settings = Settings(data_dir=tmp_path, result_ttl_s=3600)
    links = EditLinks(settings, UrlSigner(b"k" * 32, 3600), jobs=None)
    job = Job(id="j1", kind="cutout", channel="web", user_id="u", payload={}, created_at=1_000_000.75)
    tokens = {links.token(job, now=now) for now in (1_000_000.9, 1_000_001.2, 1_000_500.99, 1_003_000.5)}
    assert len(tokens) == 1
    token = tokens.pop()
    assert links.job_id(token, now=1_003_600.0) == "j1"  # the result's last whole second
    with pytest.raises(ExpiredToken):
        links.job_id(token, now=1_003_601.0)


def test_liff_link_when_configured(make_app, line_double, portrait_jpeg):
    app = make_app(line_liff_id="1657000000-AbCdEfGh")
    client = app.test_client()
    send_photo(client, line_double, portrait_jpeg, user="Ueditor4")
    link = edit_link(messages(line_double, 1)[0])
    parts = urlsplit(link)
    assert parts.scheme == "https" and parts.netloc == "liff.line.me" and parts.path == "/1657000000-AbCdEfGh"
    token = parse_qs(parts.query)["t"][0]
    # LINE's first load of the endpoint ({PUBLIC_BASE_URL}/edit) folds the LIFF URL's query into liff.state.
    first = client.get("/edit?liff.state=" + quote(f"?t={token}", safe=""))
    assert first.status_code == 200 and "儲存並傳到聊天室" in first.get_data(as_text=True)
    assert client.get(f"/edit?t={token}").status_code == 200
    assert client.get("/edit").status_code == 404


def test_messenger_card_opens_the_editor_in_a_tall_webview():
    picture = Picture("https://cutout.test/r/p/preview.jpg", 400, 300, "https://cutout.test/r/f/cutout.png")
    card = Card("Your cutout is ready!", "Transparent PNG", "alt",
                (Link("Download", "https://cutout.test/r/f/cutout.png"), Choice("New background", "menu=backgrounds"),
                 Choice("More", "menu=more")), picture, edit=Link("Edit cutout", "https://cutout.test/edit/abc"))
    buttons = card_attachment(card)["payload"]["elements"][0]["buttons"]
    assert [(b["type"], b["title"]) for b in buttons] == [("web_url", "Download"), ("web_url", "Edit cutout"),
                                                          ("postback", "More")]
    assert buttons[1]["webview_height_ratio"] == "tall" and buttons[1]["url"] == "https://cutout.test/edit/abc"


def test_messenger_save_sends_the_corrected_cutout_with_the_send_api(tmp_path, small_side_pipeline, two_objects):
    from tests.channel_drivers import MessengerDriver, chat_app, check_messenger_message, stop_chat_app

    driver = MessengerDriver()
    app = chat_app(driver, tmp_path, small_side_pipeline)
    client = app.test_client()
    try:
        driver.send_photo(client, two_objects, user="7203456789000042")
        [card] = driver.conversation(1)
        label, kind, link = card["buttons"][1]
        assert (label, kind) == ("修正去背", "url") and link.startswith("https://cutout.test/edit/")
        assert card["choices"][0][0] == "只留主體"
        base = urlsplit(link).path
        marks = client.get(base).get_data(as_text=True)  # the page embeds the quick fix's marks
        assert '"mainOnly": [{"type": "tap", "mode": "erase"' in marks
        page_marks = json.loads(marks.split('<script id="config" type="application/json">')[1].split("</script>")[0])
        assert client.post(base + "/save", json={"marks": page_marks["mainOnly"]}).get_json()["sent"] is True
        corrected = driver.conversation(2)[1]
        check_messenger_message(driver.raw_messages()[1])
        assert corrected["title"] == "修正好了！" and corrected["buttons"][1][0] == "修正去背"
        assert driver.double.messages()[1].body["recipient"] == {"id": "7203456789000042"}
        alpha = png_alpha(client.get(urlsplit(corrected["image"]).path).data)
        assert count_objects(alpha) == 1
    finally:
        stop_chat_app(app, driver)


def test_the_editors_second_opinion_is_u2netp_on_the_pipeline_thread(real_pipeline, portrait_truth):
    """What a keep tap ISNet did not see asks for (bot.edits.second_opinion_from): the real
    U^2-Net-p, run on the pipeline thread that owns the models, for the stored 8-bit photo."""
    import threading

    from bot.edits import second_opinion_from
    from pipeline.worker import PipelineWorker

    asked = []

    class Recording:
        def segmenter(self, name):
            asked.append((name, threading.current_thread().name))
            return real_pipeline.segmenter(name)

    worker = PipelineWorker(name="pipeline-under-test")
    worker.start()
    try:
        photo = np.asarray(Image.open(shared_image("GT04")).convert("RGB"))
        mask = second_opinion_from(Recording(), worker)(photo)
    finally:
        worker.stop()
    assert asked == [("u2netp", "pipeline-under-test")]
    assert mask.ndim == 2 and mask.min() >= 0.0 and mask.max() <= 1.0
    height, width = portrait_truth.shape
    resized = np.asarray(Image.fromarray(mask.astype(np.float32), "F").resize((width, height)))
    subject, truth = resized > 0.5, portrait_truth > 0.5
    assert (subject & truth).sum() / (subject | truth).sum() > 0.6  # it does see the trolls


def test_the_models_faint_response_is_kept_for_the_editor():
    """The editor bounds a tap by the model's faint response (0.001-0.02 over an object it did not
    pick, 0.00001 over the background): the stored mask keeps it; older 8-bit masks still read."""
    mask = np.array([[0.00001, 0.004, 0.02, 0.5, 1.0]], dtype=np.float32)
    stored = read_mask_png(mask_png(mask))
    assert stored.dtype == np.float32
    assert np.abs(stored - mask).max() <= 0.5 / 65535 + 1e-7
    assert stored[0, 1] > NO_EVIDENCE > stored[0, 0]  # an object the model did not pick, and its background
    assert Image.open(io.BytesIO(mask_png(mask))).mode.startswith("I")
    assert np.array_equal(read_mask_png(grey_png(mask)), np.round(mask * 255) / 255)
