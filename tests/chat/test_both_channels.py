"""One scenario, both platforms: the shared conversation decides the same replies on each.

A result is a native card (LINE Flex bubble / Messenger generic template) with its picture, three
short buttons and icon quick replies; no link ever appears in a text; every message passes the
platform's documented shape (tests/channel_drivers.check_*).
"""
from __future__ import annotations

import io
import re
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from tests.channel_drivers import URL_IN_TEXT, chat_app, local_path, stop_chat_app


def test_photo_cutout_then_background_choice(driver, tmp_path, small_side_pipeline, portrait_jpeg):
    app = chat_app(driver, tmp_path, small_side_pipeline)
    client = app.test_client()
    try:
        driver.send_photo(client, portrait_jpeg, user="Uscenario1")
        [card] = driver.conversation(1)
        assert card.get("card") and card["title"] == "去背完成！" and "天內可以下載" in card["subtitle"]
        # The picture: an opaque preview within LINE's card limits; a tap opens the real PNG.
        preview = client.get(local_path(card["preview"]))
        assert preview.headers["Content-Type"] == "image/jpeg" and len(preview.data) <= 1_000_000
        assert max(Image.open(io.BytesIO(preview.data)).size) <= 1024
        cutout = Image.open(io.BytesIO(client.get(local_path(card["image"])).data))
        assert cutout.mode == "RGBA"
        # Short buttons; the long signed link only behind Download.
        # Messenger's three buttons: the editor (a tall webview) in New background's place, whose
        # choices are the quick replies; LINE keeps all three and shows 修正去背 under the text.
        second = ("修正去背", "url") if driver.name == "messenger" else ("換背景", "data")
        assert [(label, kind) for label, kind, _ in card["buttons"]] == [("下載", "url"), second, ("更多", "data")]
        assert card["buttons"][0][2] == card["image"]

        # Quick replies: customers' words, the most used first, each with a small PNG icon from the app.
        labels = [label for label, _ in card["choices"]]
        assert labels[:2] == ["白底", "背景模糊"] and {"品牌紅", "品牌藍", "黑底", "黑白遮罩（給設計師）"} <= set(labels)
        assert not any(re.search(r"品牌色\d|只要遮罩", label) for label in labels)
        assert len(labels) <= 13 and all(len(label) <= 20 for label in labels)
        assert all(icon and icon.startswith("https://cutout.test/icons/bg/") for icon in card["icons"])
        for icon in set(card["icons"]):
            parts = urlsplit(icon)
            answer = client.get(parts.path, query_string=parts.query)
            assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
            assert len(answer.data) < 20_000
            picture = Image.open(io.BytesIO(answer.data))
            assert picture.size[0] == picture.size[1] >= 24
        assert client.get("/icons/bg/no-such-background.png").status_code == 404

        black = dict(card["choices"])["黑底"]
        driver.tap(client, black, user="Uscenario1")
        composite_card = driver.conversation(2)[1]
        assert composite_card["title"] == "換好背景了：黑底"
        composite = np.asarray(Image.open(io.BytesIO(client.get(local_path(composite_card["image"])).data)).convert("RGB"))
        alpha = np.asarray(cutout)[:, :, 3]
        assert composite[alpha < 5].mean() < 10  # background is black now

        # New background: the choices again, as quick replies under a short prompt.
        driver.tap(client, dict((label, value) for label, _, value in composite_card["buttons"])["換背景"],
                   user="Uscenario1")
        prompt = driver.conversation(3)[2]
        assert "選一個新背景" in prompt["text"] and [label for label, _ in prompt["choices"]] == labels
        # More: the mask for designers, the full transparent PNG, help.
        driver.tap(client, dict((label, value) for label, _, value in card["buttons"])["更多"], user="Uscenario1")
        more = driver.conversation(4)[3]
        assert more.get("card") and more["image"] is None
        assert [(label, kind) for label, kind, _ in more["buttons"]] == [
            ("黑白遮罩（給設計師）", "data"), ("透明去背原檔", "url"), ("使用說明", "data")]
        driver.tap(client, more["buttons"][2][2], user="Uscenario1")
        assert "用法" in driver.conversation(5)[4]["text"]

        # Another user cannot use this user's job id.
        driver.tap(client, black, user="Usomeone-else")
        refused = driver.conversation(6)[5]
        assert "失效" in refused["text"]

        for message in driver.raw_messages():  # every message in the platform's documented shape
            driver.check(message)
        texts = [m["text"] for m in driver.conversation(6)]
        assert not any(URL_IN_TEXT.search(text) for text in texts), texts
    finally:
        stop_chat_app(app)


def test_mask_card_and_english(driver, tmp_path, small_side_pipeline, portrait_jpeg):
    app = chat_app(driver, tmp_path, small_side_pipeline, default_language="en",
                   brand_colors=("#e60012=Festive red", "#2e7d32"))
    client = app.test_client()
    try:
        driver.send_photo(client, portrait_jpeg, user="Uscenario2")
        [card] = driver.conversation(1)
        assert card["title"] == "Your cutout is ready!"
        second = "Edit cutout" if driver.name == "messenger" else "New background"
        assert [label for label, _, _ in card["buttons"]] == ["Download", second, "More"]
        labels = [label for label, _ in card["choices"]]
        assert labels[:4] == ["White", "Blurred background", "Festive red", "Brand green"]
        driver.tap(client, dict(card["choices"])["Mask (for designers)"], user="Uscenario2")
        mask_card = driver.conversation(2)[1]
        assert mask_card["title"] == "Your black-and-white mask"
        mask = Image.open(io.BytesIO(client.get(local_path(mask_card["image"])).data))
        assert mask.mode in ("L", "LA", "RGB", "RGBA")
        for message in driver.raw_messages():
            driver.check(message)
        # English only: no Chinese characters in what an English user reads.
        for flat in driver.conversation(2):
            assert not re.search(r"[\u4e00-\u9fff]", flat["text"] + "".join(l for l, _ in flat["choices"]))
    finally:
        stop_chat_app(app)


def test_background_words_icons_and_order_follow_the_configuration():
    from bot import backgrounds

    colours = ("#e60012", "#0068b7", "#0050a0=海軍藍", "not a colour", "#00aa00")
    ids = backgrounds.choice_ids(colours)
    assert ids == ["white", "blur", "brand1", "brand2", "brand3", "black", "studio", "sunset", "mint", "mask"]
    assert [backgrounds.choice_label(c, "zh-TW", colours) for c in ids[2:5]] == ["品牌紅", "品牌藍", "海軍藍"]
    blues = ("#0068b7", "#1565c0")  # two colours of one hue stay apart
    assert [backgrounds.choice_label(c, "zh-TW", blues) for c in ("brand1", "brand2")] == ["品牌藍", "品牌藍 2"]
    assert [backgrounds.choice_label(c, "en", blues) for c in ("brand1", "brand2")] == ["Brand blue", "Brand blue 2"]
    assert backgrounds.choice_label("brand3", "zh-TW", ("#fff",)) == "品牌色"  # offered before a config change
    for language in ("zh-TW", "en"):
        assert all(len(backgrounds.choice_label(c, language, colours)) <= 20 for c in ids)
    assert backgrounds.background_for("brand3", colours).color == backgrounds.background_for("#0050a0", ()).color
    icon = Image.open(io.BytesIO(backgrounds.icon_png("brand1", colours)))
    assert icon.size == (96, 96) and icon.mode == "RGBA"
    assert icon.getpixel((48, 48))[:3] == (230, 0, 18) and icon.getpixel((0, 0))[3] == 0  # a round swatch
