"""Photo sets: an album sent at once is one request and gets one answer (a carousel + a summary card
with the set's ZIP and "apply to all"), through the LINE double (and Messenger's, where a message
with several photos is the set). Small photos (<= 240 px) keep the 12 cutouts quick."""
from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from settings import Settings
from tests.channel_drivers import (LineDriver, MessengerDriver, chat_app, local_path, only_chinese, stop_chat_app,
                                   wait_until)
from tests.conftest import jpeg_bytes, shared_image
from tests.servers.fixtures import s3_env, s3_server  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def album_photos() -> list[bytes]:
    return [jpeg_bytes(shared_image(f"GT{number:02d}"), max_side=240) for number in range(1, 13)]


def zip_members(client, url: str) -> dict[str, Image.Image]:
    answer = client.get(local_path(url))
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        return {name: Image.open(io.BytesIO(archive.read(name))) for name in archive.namelist()}


def buttons(card: dict) -> dict[str, str]:
    return {label: value for label, _, value in card["buttons"]}


def test_an_album_of_12_is_one_request_with_one_summary_zip_and_apply_to_all(tmp_path, small_side_pipeline,
                                                                               album_photos):
    driver = LineDriver()
    # A limit of 3 photos a minute: 12 photos sent one by one would be refused; as one set they are not.
    app = chat_app(driver, tmp_path, small_side_pipeline, rate_limit_count=3)
    client, user = app.test_client(), "Ualbum12"
    jobs = app.extensions["cutout"]["jobs"]
    try:
        started = time.monotonic()
        events = driver.send_album(client, album_photos, user)
        carousel, summary = driver.conversation(2, timeout=180)
        elapsed = time.monotonic() - started
        # One answer, in one reply call, with the first photo's reply token; nothing else was sent.
        assert wait_until(lambda: jobs.counts_by_status() == {"finished": 13}, 10), jobs.counts_by_status()
        [delivery] = driver.double.delivered()
        assert delivery.path == "/v2/bot/message/reply" and delivery.body["replyToken"] == events[0]["replyToken"]
        assert len(delivery.body["messages"]) == 2
        assert not any("太快" in message.get("text", "") for message in driver.conversation(2))
        for message in driver.raw_messages():  # line-bot-sdk v3's models and LINE's limits (<= 12 bubbles)
            driver.check(message)

        assert carousel.get("carousel") and len(carousel["cards"]) == 12
        assert [card["title"] for card in carousel["cards"]] == [f"第 {n} 張（共 12 張）" for n in range(1, 13)]
        assert summary["title"] == "12 張照片都去背好了！" and only_chinese(summary["text"])
        cutouts = zip_members(client, buttons(summary)["下載全部（ZIP）"])
        assert sorted(cutouts) == [f"{n:02d}.png" for n in range(1, 13)]
        assert all(image.mode == "RGBA" for image in cutouts.values())
        first = Image.open(io.BytesIO(client.get(local_path(carousel["cards"][0]["image"])).data))
        assert first.size == cutouts["01.png"].size

        # "Apply to all": the quick replies carry the set; white for every photo, one carousel + ZIP.
        labels = [label for label, _ in summary["choices"]]
        assert labels[:4] == ["商品圖", "做成貼圖", "貼文尺寸", "限動尺寸"] and "白底" in labels
        assert all("set=" in data for _, data in summary["choices"])
        driver.tap(client, dict(summary["choices"])["白底"], user)
        applied, applied_card = driver.conversation(4, timeout=120)[2:]
        assert applied.get("carousel") and len(applied["cards"]) == 12
        assert applied_card["title"] == "全部做好了：白底"
        whites = zip_members(client, buttons(applied_card)["下載全部（ZIP）"])
        assert len(whites) == 12 and all(name.endswith(".jpg") for name in whites)
        for name, image in whites.items():
            cutout = cutouts[name.split("-")[0] + ".png"]
            assert image.size == cutout.size
            background = np.asarray(cutout)[:, :, 3] < 5
            assert np.asarray(image.convert("RGB"))[background].mean() > 240  # the background turned white
        # 全部改尺寸: the presets for the whole set, as quick replies under a short prompt.
        driver.tap(client, buttons(applied_card)["全部改尺寸"], user)
        sizes = driver.conversation(5)[4]
        assert "整組照片" in sizes["text"] and [label for label, _ in sizes["choices"]] == labels[:4]
        for message in driver.raw_messages()[2:]:
            driver.check(message)
        print(f"album of 12: summary after {elapsed:.1f} s")
    finally:
        stop_chat_app(app, driver)


def test_a_set_whose_last_photo_never_arrives_is_answered_after_the_wait(tmp_path, small_side_pipeline, album_photos):
    """Photo 2 is damaged and photo 3 of 3 never comes: one summary lists both, in the user's language."""
    driver = LineDriver()
    app = chat_app(driver, tmp_path, small_side_pipeline, album_wait_s=3)
    client, user = app.test_client(), "Ualbumlate"
    try:
        started = time.monotonic()
        driver.send_album(client, [album_photos[0], b"not a photo"], user, total=3)
        carousel, summary = driver.conversation(2)
        assert time.monotonic() - started >= 3  # it waited for photo 3
        assert len(carousel["cards"]) == 1
        assert summary["title"] == "1 張完成，2 張沒有處理"
        assert "第 2 張：檔案無法讀取" in summary["subtitle"] and "第 3 張：沒有收到" in summary["subtitle"]
        assert len(zip_members(client, buttons(summary)["下載全部（ZIP）"])) == 1
        time.sleep(0.5)
        assert len(driver.conversation(2)) == 2  # the damaged photo got no answer of its own
    finally:
        stop_chat_app(app, driver)


def test_messenger_photos_in_one_message_are_one_set(tmp_path, small_side_pipeline, album_photos):
    driver = MessengerDriver()
    app = chat_app(driver, tmp_path, small_side_pipeline)
    client, user = app.test_client(), "7209000000000777"
    try:
        driver.send_album(client, album_photos[:2], user)
        carousel, summary = driver.conversation(2)
        assert carousel.get("carousel") and len(carousel["cards"]) == 2
        assert summary["title"] == "2 張照片都去背好了！"
        assert len(zip_members(client, buttons(summary)["下載全部（ZIP）"])) == 2
        time.sleep(0.5)
        assert len(driver.conversation(2)) == 2  # nothing answered the photos one by one

        # 做成貼圖 for the whole set: a sticker per photo, plus the set's main and tab images.
        driver.tap(client, dict(summary["choices"])["做成貼圖"], user)
        stickers, card = driver.conversation(4)[2:]
        assert len(stickers["cards"]) == 2 and card["title"] == "全部做好了：做成貼圖"
        files = zip_members(client, buttons(card)["下載全部（ZIP）"])
        assert sorted(files) == ["01.png", "02.png", "main.png", "tab.png"]
        assert files["main.png"].size == (240, 240) and files["tab.png"].size == (96, 74)
        for name in ("01.png", "02.png"):
            width, height = files[name].size
            assert width <= 370 and height <= 320 and width % 2 == 0 and height % 2 == 0
        for message in driver.raw_messages():
            driver.check(message)
    finally:
        stop_chat_app(app, driver)


def test_a_set_accepted_by_a_process_that_died_is_answered_once_after_restart(tmp_path, small_side_pipeline,
                                                                              album_photos, s3_server, s3_env):
    """The webhook recorded the set (its photos, its album job, who belongs), then the process died
    before working on any of it: the next process resumes them and sends the one summary; LINE
    redelivering the webhook changes nothing. The set's bookkeeping, its ZIP and its links live in
    the shared blob store, here S3 (moto's server)."""
    driver = LineDriver()
    blob_url = f"s3://{s3_server.new_bucket()}/cutout"
    first = chat_app(driver, tmp_path, small_side_pipeline, blob_url=blob_url)
    first.extensions["cutout"]["conversation"].dispatch = lambda job_id: None  # dies right after accepting
    blobs, written = first.extensions["cutout"]["conversation"].blobs, []
    put = blobs.put
    blobs.put = lambda key, data: written.append(key) or put(key, data)
    client, user = first.test_client(), "Ualbumrestart"
    events = driver.send_album(client, album_photos[:2], user)
    assert written == []  # the set is its job rows: no S3 PUT inside the webhook request
    stop_chat_app(first)  # the double stays: the next process answers through it
    assert first.extensions["cutout"]["jobs"].counts_by_status() == {"queued": 3}

    time.sleep(0.05)  # the next process boots later than the jobs were made
    second = chat_app(driver, tmp_path, small_side_pipeline, blob_url=blob_url)
    try:
        carousel, summary = driver.conversation(2, timeout=120)
        assert len(carousel["cards"]) == 2 and summary["title"] == "2 張照片都去背好了！"
        assert sorted(zip_members(second.test_client(), buttons(summary)["下載全部（ZIP）"])) == ["01.png", "02.png"]
        assert not (tmp_path / "var" / "blobs").exists()  # nothing went to local files
        jobs = second.extensions["cutout"]["jobs"]
        assert wait_until(lambda: jobs.counts_by_status() == {"finished": 3}, 10), jobs.counts_by_status()
        import json

        from tests.conftest import line_signature

        body = json.dumps({"destination": "U0", "events": events}).encode()  # LINE redelivers the webhook
        assert second.test_client().post("/callback/line", data=body,
                                         headers={"X-Line-Signature": line_signature(body)}).status_code == 200
        time.sleep(1.0)
        assert len(driver.double.delivered()) == 1 and jobs.counts_by_status() == {"finished": 3}
    finally:
        stop_chat_app(second, driver)


def test_a_set_without_index_and_total_counts_once_and_is_answered_photo_by_photo(tmp_path, small_side_pipeline):
    """LINE for Android 11.15 and older sends a set's id only: its photos are one request for the
    rate limit (no "too fast" at a limit of 2), each answered on its own (here: damaged files)."""
    driver = LineDriver()
    app = chat_app(driver, tmp_path, small_side_pipeline, rate_limit_count=2)
    client, user = app.test_client(), "Uoldandroid"
    try:
        driver.send_album(client, [b"not a photo"] * 4, user, numbered=False)
        answers = driver.conversation(4)
        assert all("無法讀取" in answer["text"] for answer in answers), answers
        assert not any("太快" in answer["text"] for answer in answers)
    finally:
        stop_chat_app(app, driver)


@pytest.mark.parametrize("channel,limit", [("line", 12), ("messenger", 10)])
def test_a_set_larger_than_a_carousel_shows_the_first_cards_and_says_the_rest_are_in_the_zip(tmp_path, channel,
                                                                                              limit):
    """14 photos: LINE shows 12 bubbles, Messenger 10 elements; the card says where the rest are, in
    either language; every message passes the platform's documented shape."""
    from bot.channels.cards import ResultCards
    from bot.channels.line import to_line_message
    from bot.channels.messenger import to_messenger_message
    from bot.chat.set_cards import SetCards
    from bot.results import UrlBuilder
    from storage.files import LocalBlobStore
    from storage.jobs import SqliteJobStore
    from storage.urls import UrlSigner
    from tests.channel_drivers import check_line_message, check_messenger_message

    settings = Settings(data_dir=tmp_path, public_base_url="https://cutout.test")
    blobs, jobs = LocalBlobStore(tmp_path / "files"), SqliteJobStore(tmp_path / "jobs.sqlite3")
    preview = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(preview, "JPEG")
    members = {}
    for index in range(1, 15):
        job = jobs.create("album_photo", channel, "Ubig", {"type": "photo"})
        blobs.put(f"results/{job.id}/preview.jpg", preview.getvalue())
        jobs.mark_finished(job.id, {"cutout": f"results/{job.id}/cutout.png", "preview": f"results/{job.id}/preview.jpg"})
        members[index] = jobs.get(job.id)
    album = jobs.create("album", channel, "Ubig", {"type": "album"})
    album.result["zip"] = blobs.put(f"results/{album.id}/photos.zip", b"PK")
    cards = SetCards(ResultCards(settings, blobs, UrlBuilder("https://cutout.test", UrlSigner(b"k" * 32, 3600))))
    for language, more in (("zh-TW", f"上面是前 {limit} 張"), ("en", f"The first {limit} are above")):
        carousel, summary = cards.summary(album, 14, members, list(range(1, 15)), language, limit)
        assert len(carousel.cards) == limit and more in summary.subtitle
        assert summary.title == ("14 張照片都去背好了！" if language == "zh-TW" else "All 14 photos are cut out!")
        for reply in (carousel, summary):
            if channel == "line":
                check_line_message(to_line_message(reply).to_dict())
            else:
                check_messenger_message(to_messenger_message(reply))


def test_a_sets_members_are_its_own_photos_rows_and_nothing_else(tmp_path):
    """Who belongs is read from the job table: the same user's other set, another user's set with the
    same id, a photo sent alone, an index beyond the set and a second photo at an index stay out."""
    from bot.chat.albums import ALBUM_KIND, MEMBER_KIND, AlbumBook, album_dedupe_key, set_key
    from storage.files import LocalBlobStore
    from storage.jobs import SqliteJobStore

    jobs = SqliteJobStore(tmp_path / "jobs.sqlite3")
    book = AlbumBook(jobs, LocalBlobStore(tmp_path / "files"))

    def photo(user: str, set_id: str, index: int, kind: str = MEMBER_KIND):
        return jobs.create(kind, "line", user, {"type": "photo", "set_id": set_id, "set_index": index, "set_total": 3})

    first = photo("U1", "SET-A", 1)
    key = set_key("line", "U1", "SET-A")
    album = jobs.create(ALBUM_KIND, "line", "U1", {"type": "album", "set_key": key, "set_total": 3},
                        dedupe_key=album_dedupe_key("line", key))
    photo("U1", "SET-B", 2)  # the same user's next set
    photo("U2", "SET-A", 2)  # another user, the same set id
    photo("U1", "SET-A", 2, kind="photo")  # not a set's photo
    third = photo("U1", "SET-A", 3)
    photo("U1", "SET-A", 4)  # beyond the set's total
    photo("U1", "SET-A", 3)  # a second photo at index 3: the first one holds the place

    assert book.album_job("line", key).id == album.id and book.album_job("messenger", key) is None
    members = book.members(album, 3)
    assert {index: job.id for index, job in members.items()} == {1: first.id, 3: third.id}
    assert book.ready(album, 3, wait_s=60, now=album.created_at + 1) is None  # 2 has not arrived, 1 and 3 not ended
    jobs.mark_finished(first.id, {})
    jobs.mark_failed(third.id, "x")
    assert book.ready(album, 3, wait_s=60, now=album.created_at + 1) is None  # still waiting for 2
    assert book.ready(album, 3, wait_s=60, now=album.created_at + 61) == [1, 3]  # the wait is over
