"""One scenario, both platforms: the shared conversation decides the same replies on each."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app import create_app
from settings import Settings
from tests.channel_drivers import local_path


def test_photo_cutout_then_background_choice(driver, tmp_path, real_pipeline, portrait_jpeg):
    app = create_app(Settings(data_dir=tmp_path / "var", public_base_url="https://cutout.test", warm_up=False,
                              **driver.settings()), pipeline=real_pipeline)
    client = app.test_client()
    try:
        driver.send_photo(client, portrait_jpeg, user="Uscenario1")
        image, text = driver.conversation(2)[:2]
        cutout = Image.open(io.BytesIO(client.get(local_path(image["image"])).data))
        assert cutout.mode == "RGBA"
        assert "去背完成" in text["text"] and "https://cutout.test/r/" in text["text"]
        labels = [label for label, _ in text["choices"]]
        assert labels[:2] == ["白色", "黑色"] and "模糊原圖" in labels and "只要遮罩" in labels

        black = dict(text["choices"])["黑色"]
        driver.tap(client, black, user="Uscenario1")
        composite_message = driver.conversation(4)[2]
        composite = np.asarray(Image.open(io.BytesIO(client.get(local_path(composite_message["image"])).data)).convert("RGB"))
        alpha = np.asarray(cutout)[:, :, 3]
        assert composite[alpha < 5].mean() < 10  # background is black now
        # Another user cannot use this user's job id.
        driver.tap(client, black, user="Usomeone-else")
        refused = driver.conversation(5)[4]
        assert "失效" in refused["text"]
    finally:
        app.extensions["cutout"]["worker"].stop()
