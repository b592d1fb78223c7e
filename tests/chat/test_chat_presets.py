"""Presets in chat: 商品圖, 做成貼圖, 貼文尺寸, 限動尺寸 under a result's "More" card, each answered
with a card whose file has the preset's exact size (LINE through the LINE double and line-bot-sdk's
models; Messenger through the Graph double)."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.channel_drivers import (LineDriver, MessengerDriver, URL_IN_TEXT, chat_app, local_path, only_chinese,
                                   stop_chat_app)
from tests.conftest import jpeg_bytes, shared_image

PRESET_LABELS = ["商品圖", "做成貼圖", "貼文尺寸", "限動尺寸"]


@pytest.fixture(scope="module")
def small_photo() -> bytes:
    return jpeg_bytes(shared_image("GT05"), max_side=300)



def buttons(card: dict) -> dict[str, str]:
    return {label: value for label, _, value in card["buttons"]}


def download(client, url: str) -> Image.Image:
    answer = client.get(local_path(url))
    assert answer.status_code == 200
    return Image.open(io.BytesIO(answer.data))


def test_line_presets_make_files_of_the_exact_sizes(tmp_path, small_side_pipeline, small_photo):
    driver = LineDriver()
    app = chat_app(driver, tmp_path, small_side_pipeline)
    client, user = app.test_client(), "Upresets"
    try:
        driver.send_photo(client, small_photo, user)
        [result] = driver.conversation(1)
        # The result card stays as it was: the backgrounds are its quick replies; presets sit under More.
        assert not set(PRESET_LABELS) & {label for label, _ in result["choices"]}
        driver.tap(client, buttons(result)["更多"], user)
        more = driver.conversation(2)[1]
        assert [label for label, _ in more["choices"][:4]] == PRESET_LABELS
        assert "商品圖" in more["subtitle"] and only_chinese(more["subtitle"])
        for icon in more["icons"][:4]:
            assert icon.startswith("https://cutout.test/icons/bg/preset-")
            picture = download(client, icon)
            assert picture.format == "PNG" and picture.size == (96, 96)
        presets = dict(more["choices"])

        # 商品圖: a 2000x2000 white square.
        driver.tap(client, presets["商品圖"], user)
        product = driver.conversation(3)[2]
        assert product["title"] == "商品圖完成（2000×2000）" and only_chinese(product["title"] + product["subtitle"])
        image = download(client, product["image"])
        assert image.size == (2000, 2000) and image.format == "JPEG"
        pixels = np.asarray(image.convert("RGB"))
        assert pixels[:40, :40].min() >= 250  # white corners (8 % margin: no subject there)
        assert max(download(client, product["preview"]).size) <= 1024

        # 做成貼圖: LINE's sticker rules, plus the set's main and tab images in a ZIP behind a button.
        driver.tap(client, presets["做成貼圖"], user)
        sticker_card = driver.conversation(4)[3]
        sticker = download(client, sticker_card["image"])
        width, height = sticker.size
        assert sticker.format == "PNG" and sticker.mode == "RGBA"
        assert width <= 370 and height <= 320 and width % 2 == 0 and height % 2 == 0
        alpha = np.asarray(sticker)[:, :, 3]
        assert alpha[:, :10].max() == 0 and alpha[:10, :].max() == 0  # LINE's 10 px margin
        assert sticker_card["title"] == f"LINE 貼圖完成（{width}×{height}）"
        zip_url = buttons(sticker_card)["貼圖組 ZIP"]
        answer = client.get(local_path(zip_url))
        assert answer.headers["Content-Type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
            assert sorted(archive.namelist()) == ["01.png", "main.png", "tab.png"]
            sizes = {name: Image.open(io.BytesIO(archive.read(name))).size for name in archive.namelist()}
        assert sizes == {"01.png": (width, height), "main.png": (240, 240), "tab.png": (96, 74)}

        # 貼文尺寸 goes on the last chosen background: pick black first.
        driver.tap(client, dict(result["choices"])["黑底"], user)
        driver.conversation(5)
        driver.tap(client, presets["貼文尺寸"], user)
        post_card = driver.conversation(6)[5]
        assert post_card["title"] == "貼文尺寸完成（1080×1350）" and "黑底" in post_card["subtitle"]
        post = np.asarray(download(client, post_card["image"]).convert("RGB"))
        assert post.shape == (1350, 1080, 3) and post[:60, :60].max() <= 5  # black above the subject

        driver.tap(client, presets["限動尺寸"], user)
        story_card = driver.conversation(7)[6]
        assert download(client, story_card["image"]).size == (1080, 1920)
        for message in driver.raw_messages():  # line-bot-sdk v3's models and LINE's limits
            driver.check(message)
        assert not any(URL_IN_TEXT.search(message.get("text", "")) for message in driver.conversation(7))
    finally:
        stop_chat_app(app, driver)


def test_messenger_story_preset(tmp_path, small_side_pipeline, small_photo):
    driver = MessengerDriver()
    app = chat_app(driver, tmp_path, small_side_pipeline)
    client, user = app.test_client(), "7209000000000001"
    try:
        driver.send_photo(client, small_photo, user)
        [result] = driver.conversation(1)
        driver.tap(client, buttons(result)["更多"], user)
        presets = dict(driver.conversation(2)[1]["choices"])
        driver.tap(client, presets["限動尺寸"], user)
        story_card = driver.conversation(3)[2]
        assert story_card["title"] == "限動尺寸完成（1080×1920）" and "背景模糊" in story_card["subtitle"]
        assert download(client, story_card["image"]).size == (1080, 1920)
        for message in driver.raw_messages():
            driver.check(message)
    finally:
        stop_chat_app(app, driver)


def test_preset_and_set_texts_are_wholly_in_each_language():
    from bot.i18n import MESSAGES

    prefixes = ("preset_", "card_preset_", "card_album_", "album_", "card_all_", "btn_zip", "btn_all_",
                "btn_sticker", "all_", "reason_", "sizes_prompt")
    keys = [key for key in MESSAGES["zh-TW"] if key.startswith(prefixes)]
    assert len(keys) >= 30
    for key in keys:
        values = dict(size="2000×2000", days=7, background="白底", index=3, total=12, count=12, done=10,
                      failed=2, shown=12, lines="第 3 張：找不到主體", reason="找不到主體", what="白底")
        assert only_chinese(MESSAGES["zh-TW"][key].format(**values)), key
        english = MESSAGES["en"][key].format(**values | {"background": "White", "reason": "no clear subject",
                                                         "lines": "Photo 3: no clear subject", "what": "White"})
        assert not any("\u4e00" <= char <= "\u9fff" for char in english), key
    for key in ("preset_product", "preset_sticker", "preset_post", "preset_story", "btn_zip_all",
                "btn_all_backgrounds", "btn_all_sizes", "btn_sticker_set"):  # buttons: <= 20 characters
        assert all(len(MESSAGES[language][key]) <= 20 for language in MESSAGES), key
