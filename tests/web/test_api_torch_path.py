"""The API on the torch path, whose pipeline thread hands each batch's refinements to the refine pool
and segments the next batch meanwhile (Pipeline.start_cutout_batch): requests sent together each get
their own photo's cutout, as the pipeline would cut it out alone."""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from app import create_app
from pipeline.decode import decode_image
from settings import Settings
from tests.conftest import SMALL_SEGMENT_SIDE, jpeg_bytes, shared_image


@pytest.fixture(scope="module")
def torch_cpu_pipeline(real_pipeline):
    pytest.importorskip("torch")
    from pipeline.cutout import Pipeline

    return Pipeline(device="torch-cpu", segment_side=SMALL_SEGMENT_SIDE)  # delivery under test, not quality


def test_requests_sent_together_each_get_their_own_cutout(tmp_path, torch_cpu_pipeline):
    troll = Image.open(io.BytesIO(jpeg_bytes(shared_image("GT04"), 240)))
    mirrored = io.BytesIO()
    troll.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored, "JPEG", quality=92)
    photos = [jpeg_bytes(shared_image("GT04"), 240), jpeg_bytes(shared_image("GT01"), 240), mirrored.getvalue()]
    app = create_app(Settings(data_dir=tmp_path / "var", warm_up=False), pipeline=torch_cpu_pipeline)
    client = app.test_client()
    worker = app.extensions["cutout"]["worker"]
    assert worker.max_batch > 1  # the torch path batches

    def send(photo: bytes):
        return client.post("/api/v1/removebg", data={"image_file": (io.BytesIO(photo), "photo.jpg")},
                           content_type="multipart/form-data")

    try:
        with ThreadPoolExecutor(len(photos)) as pool:
            responses = list(pool.map(send, photos))
    finally:
        worker.stop()
    assert [response.status_code for response in responses] == [200] * len(photos)
    assert worker.stats.batches < len(photos)  # some were batched together (handed off and finished later)
    answers = [np.asarray(Image.open(io.BytesIO(response.data)))[:, :, 3] / 255 for response in responses]
    alone = [torch_cpu_pipeline.cutout(decode_image(photo)).alpha for photo in photos]
    for index, answer in enumerate(answers):
        assert answer.shape == alone[index].shape
        assert np.abs(answer - alone[index]).mean() < 0.01  # batching moves floats, not cutouts
    # The troll and its mirror share a size, so a batch holds both: each answer is its own photo's.
    assert np.abs(answers[2] - alone[0]).mean() > 10 * np.abs(answers[2] - alone[2]).mean()
