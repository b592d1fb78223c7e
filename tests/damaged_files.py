"""Damaged files that still look like images, made at test time by corrupting real encodes.

The three kinds a probe of the service found raising past the decoder's old except-list:
a JPEG whose EXIF block has a tag of the wrong type (struct.error while re-writing EXIF during
orientation), and two HEICs whose inner structure is broken (EOFError, RuntimeError from libheif).
"""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image

DAMAGED_KINDS = ("jpeg_broken_exif", "heic_eof", "heic_runtime")


def gradient_image(width: int = 64, height: int = 48) -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    return Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=2))


def jpeg_with_broken_exif() -> bytes:
    """A good JPEG whose EXIF says 'rotate' and holds ImageWidth as text (struct.error re-writing it)."""
    # A big-endian TIFF block built by hand, so the broken entry's bytes are known exactly.
    entries = [(0x0100, 2, 4, b"Cam\x00"),  # ImageWidth stored as ASCII: the damage
               (0x0112, 3, 1, struct.pack(">HH", 6, 0))]  # Orientation = 6: forces a transpose
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        tiff += struct.pack(">HHI", tag, kind, count) + value
    tiff += struct.pack(">I", 0)
    buffer = io.BytesIO()
    gradient_image().save(buffer, "JPEG", exif=b"Exif\x00\x00" + tiff)
    return buffer.getvalue()


def _raw_decode_error(data: bytes) -> type[BaseException] | None:
    """What Pillow itself raises opening and loading `data` (None when it decodes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            image.load()
    except Exception as error:  # the point: see which exception type escapes
        return type(error)
    return None


def damaged_heic(wanted: type[BaseException]) -> bytes:
    """A small HEIC with one byte changed so that decoding raises `wanted` (EOFError, RuntimeError).

    The byte is searched for, not hard-coded, so a new libheif/encoder release still yields one.
    """
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    gradient_image().save(buffer, "HEIF")
    data = buffer.getvalue()
    for position in range(8, len(data)):
        for value in (0x00, 0xFF, 0x7F):
            damaged = data[:position] + bytes([value]) + data[position + 1:]
            if _raw_decode_error(damaged) is wanted:
                return damaged
    raise AssertionError(f"no single-byte change of a HEIC raises {wanted.__name__}")


def damaged_file(kind: str) -> bytes:
    if kind == "jpeg_broken_exif":
        return jpeg_with_broken_exif()
    return damaged_heic({"heic_eof": EOFError, "heic_runtime": RuntimeError}[kind])
