"""Campaigns: poster pixels, admin auth and management, trigger flows on both channels, YAML."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageFont

from app import create_app
from bot.campaigns import Campaign, CampaignError, validate_asset
from models import ensure_model, get_spec
from models.specs import CAPTION_FONT
from pipeline.outputs.poster import PosterLayout, compose_poster, place_subject
from settings import Settings
from tests.channel_drivers import (LineDriver, MessengerDriver, chat_app, local_path, messenger_body, messenger_signature,
                                   stop_chat_app)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def subject() -> tuple[np.ndarray, np.ndarray]:
    alpha = np.zeros((200, 100), np.float32)
    alpha[20:180, 20:80] = 1.0  # a tall red rectangle in a larger transparent frame
    foreground = np.zeros((200, 100, 3), np.float32)
    foreground[:, :, 0] = 1.0
    return foreground, alpha


def frame_overlay(size=(400, 400)) -> np.ndarray:
    frame = np.zeros((*size, 4), np.float32)
    frame[:20, :, :] = (0, 0, 1, 1)  # an opaque blue band at the top, transparent elsewhere
    frame[-20:, :, :] = (0, 0, 1, 1)
    return frame


@pytest.fixture(scope="module")
def font_path() -> str:
    return str(ensure_model(get_spec(CAPTION_FONT)))


def test_subject_fits_its_box_anchored_bottom_centre():
    foreground, alpha = subject()
    layout = PosterLayout(canvas=(400, 400), subject_box=(0.25, 0.25, 0.5, 0.5))
    _, placed, (left, top, width, height) = place_subject(foreground, alpha, layout)
    ys, xs = np.nonzero(placed > 0.5)
    assert ys.min() >= 100 and ys.max() <= 299 and xs.min() >= 100 and xs.max() <= 299
    assert ys.max() >= 297  # touches the bottom of the box
    assert abs((xs.min() + xs.max()) / 2 - 200) <= 2  # horizontally centred
    assert height == 200 and width == 75  # 160x60 scaled by 200/160 keeps its aspect


def test_poster_layers_frame_above_subject_and_caption(font_path):
    foreground, alpha = subject()
    layout = PosterLayout(canvas=(400, 400), subject_box=(0.0, 0.0, 1.0, 1.0), caption_y=0.5,
                          caption_color=(0.0, 1.0, 0.0))
    poster = compose_poster(foreground, alpha, layout, (1.0, 1.0, 1.0), frame=frame_overlay(),
                            caption="夏日活動", font_path=font_path)
    assert poster.shape == (400, 400, 3)
    assert np.allclose(poster[390, 200], (0, 0, 1), atol=0.02)  # frame drawn over the subject's feet
    assert poster[300, 200, 0] > 0.9 and poster[300, 200, 1] < 0.1  # the subject (red) below the caption
    assert poster[300, 20].min() > 0.95  # white background beside it
    green = (poster[:, :, 1] > 0.8) & (poster[:, :, 0] < 0.3) & (poster[:, :, 2] < 0.3)
    assert green[180:220].sum() > 200 and green[:150].sum() == 0  # caption drawn where asked
    font = ImageFont.truetype(font_path, 40)
    summer, day = (np.asarray(Image.Image()._new(font.getmask(c))) for c in "夏日")
    assert summer.size and (summer.shape != day.shape or np.any(summer != day))  # real CJK glyphs, not tofu


def test_asset_and_campaign_validation():
    with pytest.raises(CampaignError, match="frame: needs transparency"):
        validate_asset(png(np.ones((100, 100, 3))), "frame")
    with pytest.raises(CampaignError, match="outside"):
        validate_asset(png(np.ones((10, 10, 3))), "logo")
    with pytest.raises(CampaignError, match="not a readable image"):
        validate_asset(b"nope", "background")
    assert validate_asset(png(frame_overlay()), "frame").startswith(b"\x89PNG")
    with pytest.raises(CampaignError, match="trigger"):
        Campaign(slug="x", title="X").validate()
    with pytest.raises(CampaignError, match="slug"):
        Campaign(slug="Bad Slug", title="X", keywords=["a"]).validate()


def basic(password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"manager:{password}".encode()).decode()}


def test_admin_is_closed_without_credentials(tmp_path, small_side_pipeline):
    closed = create_app(Settings(data_dir=tmp_path / "a", warm_up=False), pipeline=small_side_pipeline).test_client()
    assert closed.get("/admin").status_code == 403
    assert closed.get("/admin", headers=basic("anything")).status_code == 403
    app = create_app(Settings(data_dir=tmp_path / "b", warm_up=False, admin_password="s3cret"),
                     pipeline=small_side_pipeline)
    client = app.test_client()
    assert client.get("/admin").status_code == 401
    assert client.get("/admin", headers=basic("wrong")).status_code == 401
    assert client.post("/admin/campaigns", data={"slug": "x"}).status_code == 401
    assert client.get("/admin/api/campaigns/x/counters").status_code == 401
    assert client.get("/admin", headers=basic("s3cret")).status_code == 200
    cross_site = client.post("/admin/campaigns", data={"slug": "x", "title": "X", "keywords": "k"},
                             headers={**basic("s3cret"), "Origin": "https://evil.example"})
    assert cross_site.status_code == 403


def create_campaign_via_admin(client, auth) -> None:
    form = {"slug": "summer", "title": "夏日自拍", "enabled": "1", "keywords": "#夏日,summer",
            "postback_values": "campaign=summer", "messenger_refs": "summer-ad", "caption": "夏日快樂",
            "background_color": "#ffe08a", "canvas": "540x540", "subject_box": "0.1,0.2,0.8,0.8",
            "anchor": "bottom-center", "logo_corner": "top-right", "state_ttl_s": "1800"}
    assert client.post("/admin/campaigns", data=form, headers=auth).status_code == 303
    frame = frame_overlay((540, 540))
    response = client.post("/admin/campaigns/summer/assets/frame", headers=auth, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(png(frame)), "frame.png")})
    assert response.status_code == 303
    bad = client.post("/admin/campaigns/summer/assets/frame", headers=auth, content_type="multipart/form-data",
                      data={"file": (io.BytesIO(png(np.ones((100, 100, 3)))), "opaque.png")})
    assert bad.status_code == 400 and "transparency" in bad.get_data(as_text=True)


def test_manager_creates_campaign_and_user_gets_framed_selfie(driver, tmp_path, small_side_pipeline, portrait_jpeg):
    app = chat_app(driver, tmp_path, small_side_pipeline, admin_password="s3cret")
    client = app.test_client()
    auth = basic("s3cret")
    try:
        create_campaign_via_admin(client, auth)
        preview = client.post("/admin/campaigns/summer/preview", headers=auth, content_type="multipart/form-data",
                              data={"file": (io.BytesIO(portrait_jpeg), "sample.jpg")})
        assert preview.status_code == 200 and preview.mimetype == "image/jpeg"
        assert Image.open(io.BytesIO(preview.data)).size == (540, 540)

        conversation = app.extensions["cutout"]["conversation"]
        from bot.events import TextReceived

        # The keyword, typed in chat, puts the user in the campaign.
        driver_send_text(driver, client, "我要參加 #夏日", user="Ucampaign")
        joined = driver.conversation(1)[0]
        assert "夏日自拍" in joined["text"]
        driver.send_photo(client, portrait_jpeg, user="Ucampaign")
        poster_message = text = driver.conversation(2)[1]  # one card: the poster, its buttons, quick replies
        poster = np.asarray(Image.open(io.BytesIO(client.get(local_path(poster_message["image"])).data)).convert("RGB"))
        assert poster.shape == (540, 540, 3)
        assert np.abs(poster[5, 270].astype(int) - (0, 0, 255)).max() < 30  # the frame is on top
        assert np.abs(poster[150, 20].astype(int) - (255, 224, 138)).max() < 30  # campaign background colour
        assert "原始去背" in [label for label, _ in text["choices"]]
        counters = client.get("/admin/api/campaigns/summer/counters", headers=auth).get_json()
        assert counters == {"participants": 1, "photos": 1, "composites": 1} or _eventually(client, auth)
        driver_send_text(driver, client, "離開", user="Ucampaign")
        assert "離開活動" in driver.conversation(3)[2]["text"]
        assert conversation.current_campaign(TextReceived(driver.name, "Ucampaign", "x", 0.0)) is None
    finally:
        stop_chat_app(app)


def _eventually(client, auth) -> bool:
    import time

    for _ in range(50):
        if client.get("/admin/api/campaigns/summer/counters", headers=auth).get_json()["composites"] == 1:
            return True
        time.sleep(0.1)
    return False


def driver_send_text(driver, client, text: str, user: str) -> None:
    if driver.name == "line":
        from tests.conftest import line_body, line_signature

        body, event = line_body("text_message.json", **{"message.text": text, "source.userId": user})
        driver.double.valid_reply_tokens.add(event["replyToken"])
        assert client.post("/callback/line", data=body, headers={"X-Line-Signature": line_signature(body)}).status_code == 200
    else:
        body, _ = messenger_body("quick_reply.json", user, text=text)
        payload = json.loads(body)
        payload["entry"][0]["messaging"][0]["message"].pop("quick_reply")
        body = json.dumps(payload).encode()
        assert client.post("/callback/messenger", data=body, content_type="application/json",
                           headers={"X-Hub-Signature-256": messenger_signature(body)}).status_code == 200


def test_entry_points_line_postback_and_messenger_ref_and_yaml(tmp_path, small_side_pipeline):
    (tmp_path / "frame.png").write_bytes(png(frame_overlay()))
    (tmp_path / "campaigns.yaml").write_text(
        "campaigns:\n"
        "  - slug: story\n    title: 限動框\n    keywords: ['#story']\n    postback_values: ['campaign=story']\n"
        "    messenger_refs: ['story-link']\n    caption: 一起來玩\n    frame: frame.png\n"
        "    layout: {canvas: [1080, 1920], subject_box: [0.05, 0.3, 0.9, 0.7]}\n")
    line, messenger = LineDriver(), MessengerDriver()
    settings = Settings(data_dir=tmp_path / "var", warm_up=False, campaigns_file=str(tmp_path / "campaigns.yaml"),
                        **line.settings(), **{k: v for k, v in messenger.settings().items()})
    app = create_app(settings, pipeline=small_side_pipeline)
    client = app.test_client()
    try:
        campaigns = app.extensions["cutout"]["campaigns"]
        story = campaigns.get("story")
        assert story.assets == ["frame"] and story.poster_layout().canvas == (1080, 1920)
        line.tap(client, "campaign=story", user="Uline")
        assert "限動框" in line.conversation(1)[0]["text"]
        body, _ = messenger_body("get_started.json", "Umsgr")
        payload = json.loads(body)
        item = payload["entry"][0]["messaging"][0]
        item.pop("postback")
        item["referral"] = {"ref": "story-link", "source": "SHORTLINK", "type": "OPEN_THREAD"}
        body = json.dumps(payload).encode()
        assert client.post("/callback/messenger", data=body, content_type="application/json",
                           headers={"X-Hub-Signature-256": messenger_signature(body)}).status_code == 200
        assert "限動框" in messenger.conversation(1)[0]["text"]
        assert campaigns.counters("story")["participants"] == 2
    finally:
        app.extensions["cutout"]["worker"].stop()
        line.stop()
        messenger.stop()


def test_admin_preview_of_a_damaged_photo_answers_cant_read(tmp_path, small_side_pipeline):
    from tests.damaged_files import DAMAGED_KINDS, damaged_file

    app = create_app(Settings(data_dir=tmp_path / "var", warm_up=False, admin_password="s3cret"),
                     pipeline=small_side_pipeline)
    client = app.test_client()
    form = {"slug": "summer", "title": "Summer", "enabled": "1", "keywords": "summer"}
    assert client.post("/admin/campaigns", data=form, headers=basic("s3cret")).status_code == 303
    for kind in DAMAGED_KINDS:
        response = client.post("/admin/campaigns/summer/preview", headers=basic("s3cret"),
                               content_type="multipart/form-data",
                               data={"file": (io.BytesIO(damaged_file(kind)), "sample.jpg")})
        assert response.status_code == 400 and response.get_json()["errors"][0]["code"] == "corrupt"
    assert app.extensions["cutout"]["worker"].stats.succeeded == 0


def test_admin_password_guessing_is_throttled_per_client(tmp_path, small_side_pipeline):
    app = create_app(Settings(data_dir=tmp_path / "var", warm_up=False, admin_password="s3cret",
                              admin_login_attempts=5), pipeline=small_side_pipeline)
    client = app.test_client()
    assert client.get("/admin").status_code == 401  # a browser's first visit is no guess
    statuses = [client.get("/admin", headers=basic(f"guess{n}")).status_code for n in range(60)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    locked = client.get("/admin", headers=basic("s3cret"))  # no oracle: the right one is refused too
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 200
    other = client.get("/admin", headers=basic("s3cret"), environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 200  # per client: someone else's guesses lock nobody else out
