"""decode_image: formats, EXIF orientation, odd modes, and every refusal with a clear reason."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.decode import HEIF_SUPPORTED, ImageDecodeError, decode_image
from tests.damaged_files import DAMAGED_KINDS, _raw_decode_error, damaged_file, jpeg_with_broken_exif


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 32) -> Image.Image:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    array[:, :, 2] = 200
    return Image.fromarray(array)


def test_exif_orientation_is_applied():
    image = gradient(64, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    decoded = decode_image(encode(image, "JPEG", exif=exif, quality=95))
    assert decoded.shape == (64, 32, 3)
    assert decoded.dtype == np.float32 and 0.0 <= decoded.min() and decoded.max() <= 1.0


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "I;16"])
def test_odd_modes_become_rgb(mode):
    base = gradient()
    if mode == "I;16":
        image = Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257))
        data = encode(image, "PNG")
    else:
        image = base.convert(mode)
        data = encode(image, "JPEG" if mode in ("L", "CMYK") else "PNG")
    decoded = decode_image(data)
    assert decoded.shape == (32, 64, 3)
    # Left to right the red ramp (or its grey) must still rise: values were scaled, not clipped.
    assert decoded[:, -1].mean() > decoded[:, 0].mean() + 0.2


def test_transparent_pixels_flatten_on_white():
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    decoded = decode_image(encode(image, "PNG"))
    assert np.allclose(decoded, 1.0)


def test_webp_and_heic():
    assert decode_image(encode(gradient(), "WEBP")).shape == (32, 64, 3)
    if HEIF_SUPPORTED:
        assert decode_image(encode(gradient(), "HEIF")).shape[:2] == (32, 64)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, this is text", "unsupported"),
        (b"%PDF-1.7\n", "unsupported"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(data, reason):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert caught.value.reason == reason and str(caught.value)


def test_truncated_jpeg_is_corrupt():
    data = encode(gradient(256, 256), "JPEG")
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data[: len(data) // 3])
    assert caught.value.reason == "corrupt"


@pytest.mark.parametrize("kind", DAMAGED_KINDS)
def test_every_decoder_failure_is_corrupt(kind):
    if kind.startswith("heic") and not HEIF_SUPPORTED:
        pytest.skip("no HEIF support on this platform")
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(damaged_file(kind))
    assert caught.value.reason == "corrupt" and "damaged" in str(caught.value)


def test_broken_exif_fixture_really_breaks_pillow():
    # Guards the fixture: without the orientation step Pillow reads it, with it struct.error escapes.
    import struct

    from PIL import ImageOps

    data = jpeg_with_broken_exif()
    assert _raw_decode_error(data) is None
    with pytest.raises(struct.error):
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))


def test_size_and_pixel_limits():
    data = encode(gradient(400, 300), "PNG")
    with pytest.raises(ImageDecodeError) as too_large:
        decode_image(data, max_bytes=len(data) - 1)
    assert too_large.value.reason == "too_large"
    with pytest.raises(ImageDecodeError) as too_many:
        decode_image(data, max_pixels=400 * 300 - 1)
    assert too_many.value.reason == "too_many_pixels"


def test_decompression_bomb_is_refused_before_decoding():
    # A 30000 x 30000 PNG header compresses to almost nothing.
    bomb = Image.new("1", (30000, 30000))
    data = encode(bomb, "PNG")
    assert len(data) < 1_000_000
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert caught.value.reason == "too_many_pixels"
