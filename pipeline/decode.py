"""Bytes in, a normalised RGB float image out: formats, EXIF orientation, size and bomb limits."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF from iPhones; optional because pillow-heif ships native wheels.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the platform's wheels
    HEIF_SUPPORTED = False

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"} | (
    {"HEIF", "HEIC"} if HEIF_SUPPORTED else set()
)


# Why decoding catches Exception, not a list: Pillow's plugins and libheif report damage in many
# ways (OSError, ValueError, SyntaxError, struct.error and TypeError from a broken EXIF block,
# EOFError and RuntimeError from a damaged HEIC, IndexError, ...), and new releases add more. Any of
# them on user bytes means "this file is unreadable", never a server error.


class ImageDecodeError(ValueError):
    """The input is not an image we can use; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "too_large" | "unsupported" | "corrupt" | "too_many_pixels" | "empty"


def decode_image(
    data: bytes, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode image bytes into an RGB float32 array of shape (h, w, 3) with values in [0, 1].

    EXIF orientation is applied; CMYK, greyscale, 16-bit, palette and alpha inputs are converted
    (transparent pixels are flattened on white, the way most viewers show them).
    Raises ImageDecodeError with a clear message for anything unusable.
    """
    if not data:
        raise ImageDecodeError("empty", "the file is empty")
    if len(data) > max_bytes:
        raise ImageDecodeError(
            "too_large", f"the file is {format_megabytes(len(data))}; the limit is {format_megabytes(max_bytes)}"
        )
    image = open_image(data, max_pixels)
    try:
        image = ImageOps.exif_transpose(image)
        rgb = _to_rgb_float(image)
    except MemoryError:
        raise  # the server ran short: not the file's fault, so not "damaged"
    except Exception as error:  # any decoder failure: see the note above ImageDecodeError
        raise ImageDecodeError("corrupt", f"the image data is damaged ({_short(error)})") from error
    return rgb


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and identify without decoding pixels; refuse unknown formats and pixel bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError("too_many_pixels", f"the image has too many pixels ({error})") from error
    except UnidentifiedImageError as error:
        if looks_like_image(data):  # right signature, unreadable inside: damaged, not unsupported
            raise ImageDecodeError("corrupt", "the image data is damaged") from error
        raise ImageDecodeError(
            "unsupported", "this is not an image format we can read (send JPEG, PNG, WebP or HEIC)"
        ) from error
    except MemoryError:
        raise
    except Exception as error:  # a known format with a damaged header (see the note above)
        raise ImageDecodeError("corrupt", f"the image data is damaged ({_short(error)})") from error
    if image.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError("unsupported", f"{image.format} images are not supported")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_many_pixels",
            f"the image is {width}x{height}; the limit is {max_pixels / 1e6:.0f} megapixels",
        )
    if width < 8 or height < 8:
        raise ImageDecodeError("corrupt", f"the image is only {width}x{height} pixels")
    return image


IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def format_megabytes(count: int) -> str:
    """Byte counts as people read them; MB = 1024 * 1024 bytes, the unit the limits are set in."""
    return f"{count / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


def _short(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:120]


def looks_like_image(data: bytes) -> bool:
    return data.startswith(IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or data[4:8] == b"ftyp"


def _to_rgb_float(image: Image.Image) -> np.ndarray:
    image.load()
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale by the real range instead of clipping at 255.
        grey = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if grey.max() > 255 else 255.0
        grey = np.clip(grey / peak, 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    # One float copy, divided in place: a 12 MP photo in 0.07 s instead of 0.12-0.6 s (the extra
    # 144 MB temporaries of convert + astype + divide cost page faults), same values bit for bit.
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB")).astype(np.float32)
    rgb /= 255.0
    return rgb


def image_to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 with rounding."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
