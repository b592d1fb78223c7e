"""PNG encoding on every core: rows filtered with NumPy, deflated in strips side by side.

Pillow deflates a PNG on one core: a 12 MP RGBA cutout took 0.77 s of the 4.5 s a 12 MP photo costs
end to end on two cores, and 0.83 s on a 16-core GPU host where everything else takes 0.4 s. A
zlib stream may be cut into strips that are deflated independently, each ending on a byte boundary
(a sync flush), and joined into one stream (pigz does the same); zlib releases the GIL while it
deflates, so the strips run in threads. Rows use PNG's "Up" filter (each byte minus the byte above),
computed for the whole image at once.
"""
from __future__ import annotations

import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey + alpha, RGB, RGBA
UP_FILTER = 2
# Rows per strip: a strip is deflated alone, so fewer, larger strips compress a little better.
MIN_STRIP_BYTES = 4 << 20
IDAT_BYTES = 1 << 20  # chunk size readers handle without trouble
WORKERS = max(1, os.cpu_count() or 1)
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    """The process's deflate threads. A pool inherited through fork (gunicorn's workers) has no
    threads behind it in the child, so each process makes its own."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool, _pool_pid = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="png"), os.getpid()
        return _pool


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def filtered_rows(pixels: np.ndarray) -> np.ndarray:
    """(h, w[, c]) uint8 -> (h, 1 + w*c) uint8: each row's filter byte, then the row minus the row above."""
    height = pixels.shape[0]
    flat = pixels.reshape(height, -1)
    rows = np.empty((height, flat.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = UP_FILTER
    rows[0, 1:] = flat[0]  # the row above the first is zeros
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG's does
    return rows


def _deflate_strip(data: memoryview, level: int, last: bool) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate: one zlib header for all
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def zlib_stream(data: np.ndarray, level: int = 1, strips: int | None = None) -> bytes:
    """One zlib stream of `data`'s bytes, deflated in strips on the shared thread pool."""
    raw = memoryview(np.ascontiguousarray(data)).cast("B")
    count = strips or max(1, min(2 * WORKERS, len(raw) // MIN_STRIP_BYTES))
    bounds = [len(raw) * index // count for index in range(count + 1)]
    parts = [(raw[start:end], level, index == count - 1) for index, (start, end) in enumerate(zip(bounds, bounds[1:]))]
    if count == 1:
        bodies = [_deflate_strip(*parts[0])]
    else:
        bodies = list(_threads().map(lambda part: _deflate_strip(*part), parts))
    header = bytes([0x78, 0x01 if level <= 1 else 0x9C])
    return header + b"".join(bodies) + struct.pack(">I", zlib.adler32(raw) & 0xFFFFFFFF)


def encode(pixels: np.ndarray, dpi: int | None = None, level: int = 1) -> bytes:
    """(h, w) grey, (h, w, 3) RGB or (h, w, 4) RGBA uint8 -> PNG bytes (8 bits per channel)."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected (h, w[, c]) uint8 pixels, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in COLOUR_TYPES or height == 0 or width == 0:
        raise ValueError(f"cannot encode {pixels.shape} as PNG")
    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[channels], 0, 0, 0)
    out = [SIGNATURE, _chunk(b"IHDR", header)]
    if dpi:
        per_metre = round(dpi / 0.0254)
        out.append(_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
    stream = zlib_stream(filtered_rows(pixels), level)
    out += [_chunk(b"IDAT", stream[start:start + IDAT_BYTES]) for start in range(0, len(stream), IDAT_BYTES)]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
