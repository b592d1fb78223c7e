"""The parallel PNG encoder: lossless, readable by Pillow, one zlib stream however it was cut."""
from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.outputs import png


def decoded(data: bytes) -> tuple[np.ndarray, Image.Image]:
    image = Image.open(io.BytesIO(data))
    image.load()  # verifies every chunk's CRC and the zlib stream's checksum
    return np.asarray(image), image


@pytest.mark.parametrize("shape,mode", [((37, 53, 4), "RGBA"), ((37, 53, 3), "RGB"), ((37, 53), "L"),
                                        ((1, 1, 4), "RGBA"), ((900, 1200, 4), "RGBA")])
def test_pixels_come_back_exactly(shape, mode):
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    pixels[: shape[0] // 2] //= 7  # some smooth, some noisy rows
    back, image = decoded(png.encode(pixels))
    assert image.mode == mode and image.size == (shape[1], shape[0])
    assert np.array_equal(back, pixels)


def stream(rows: np.ndarray, strips: int) -> bytes:
    return b"".join(piece for pieces in png.deflated_rows(rows, strips=strips) for piece in pieces)


def test_a_stream_cut_into_strips_is_one_valid_zlib_stream():
    rows = np.random.default_rng(3).integers(0, 4, size=(1001, 3001), dtype=np.uint8)
    whole = png.filtered_rows(rows, None).tobytes()  # the Up filter over the image at once
    for strips in (1, 2, 7, 1001):
        assert zlib.decompress(stream(rows, strips)) == whole  # zlib checks the combined Adler-32 too


def test_adler32_of_joined_data_from_its_parts():
    data = np.random.default_rng(4).integers(0, 256, size=200_003, dtype=np.uint8).tobytes()
    for cut in (0, 1, 65521, 100_000, len(data)):
        first, second = data[:cut], data[cut:]
        assert png.adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) == zlib.adler32(data)


def test_large_images_use_several_strips_and_stay_small(monkeypatch):
    monkeypatch.setattr(png, "STRIP_BYTES", 1 << 16)
    gradient = np.broadcast_to(np.linspace(0, 255, 800, dtype=np.uint8)[None, :, None], (600, 800, 4)).copy()
    data = png.encode(gradient)
    back, _ = decoded(data)
    assert np.array_equal(back, gradient)
    assert len(data) < gradient.nbytes / 50  # the Up filter turns a vertical-invariant gradient into zeros


def test_dpi_is_written_and_bad_input_refused():
    _, image = decoded(png.encode(np.zeros((4, 4, 3), np.uint8), dpi=300))
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    with pytest.raises(ValueError):
        png.encode(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        png.encode(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError):
        png.encode(np.zeros((0, 4), np.uint8))


def test_a_forked_child_gets_its_own_deflate_threads():
    import multiprocessing

    rows = np.arange(1000, dtype=np.uint32).astype(np.uint8).reshape(100, 10)
    stream(rows, 2)  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:  # a hung pool would time the call out
        data = pool.apply_async(stream, (rows, 3)).get(timeout=30)
    assert zlib.decompress(data) == png.filtered_rows(rows, None).tobytes()
