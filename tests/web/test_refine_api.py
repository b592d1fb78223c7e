"""POST /api/v1/refine: the photo cut out, the marks applied, through Flask's client and the real model."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def client(make_api):
    return make_api()


def alpha_of(response) -> np.ndarray:
    assert response.status_code == 200, response.get_data(as_text=True)
    return np.asarray(Image.open(io.BytesIO(response.data)).convert("L"), dtype=np.float32) / 255.0


def test_erase_stroke_clears_the_subject_under_it_and_nothing_far_away(client, small_photo):
    photo_b64 = base64.b64encode(small_photo).decode("ascii")
    shipped = alpha_of(client.post("/api/v1/refine", json={"image_file_b64": photo_b64, "marks": [],
                                                          "channels": "alpha"}))
    rows, cols = np.nonzero(shipped > 0.5)
    y = int(np.median(rows))
    left, right = int(cols[rows == y].min()), int(cols[rows == y].max())
    stroke = {"type": "stroke", "mode": "erase", "radius": 6, "points": [[left, y], [right, y]]}
    # A form with the marks as a JSON string, as a browser's FormData sends them.
    response = client.post("/api/v1/refine", data={"image_file": (io.BytesIO(small_photo), "photo.jpg"),
                                                   "marks": json.dumps([stroke]), "channels": "alpha"},
                           content_type="multipart/form-data")
    refined = alpha_of(response)
    assert refined.shape == shipped.shape
    under = np.zeros(shipped.shape, dtype=bool)
    under[y - 4:y + 5, left + 4:right - 3] = True
    assert shipped[under].mean() > 0.5  # there was subject under the stroke
    assert refined[under].max() <= 2 / 255
    far = np.ones(shipped.shape, dtype=bool)
    far[max(0, y - 30):y + 31, :] = False
    assert np.abs(refined[far] - shipped[far]).max() <= 1 / 255


def test_bad_marks_are_a_400_with_a_code(client, small_photo):
    photo_b64 = base64.b64encode(small_photo).decode("ascii")
    for marks, code in (([{"type": "tap", "x": 5000, "y": 1, "mode": "keep"}], "invalid_marks"),
                        ([{"type": "lasso"}], "invalid_marks"), (None, "missing_marks")):
        body = {"image_file_b64": photo_b64}
        if marks is not None:
            body["marks"] = marks
        response = client.post("/api/v1/refine", json=body)
        assert response.status_code == 400
        assert response.get_json()["errors"][0]["code"] == code
    chinese = client.post("/api/v1/refine", json={"image_file_b64": photo_b64}, headers={"Accept-Language": "zh-TW"})
    assert "marks" in chinese.get_json()["errors"][0]["title"] and "沒有收到" in chinese.get_json()["errors"][0]["title"]


def test_openapi_documents_refine_with_its_marks(client):
    document = client.get("/api/v1/openapi.json").get_json()
    refine = document["paths"]["/api/v1/refine"]["post"]
    schema = refine["requestBody"]["content"]["application/json"]["schema"]
    assert "marks" in schema["required"]
    assert schema["properties"]["marks"]["items"]["properties"]["mode"]["enum"] == ["keep", "erase"]
    assert "/api/v1/removebg" in document["paths"]
