"""Store a cutout's files and build their signed URLs (shared by the chat bots and the web page)."""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.cutout import CutoutResult
from pipeline.outputs import compose
from pipeline.decode import decode_image
from pipeline.outputs.presets import PresetOptions, render_preset, render_sticker_set
from pipeline.outputs.render import Background, checkerboard_preview, encode_jpeg, render
from pipeline.outputs.sticker import set_entry_names
from storage.files import LocalBlobStore

CHAT_ORIGINAL_MAX_BYTES = 10_000_000  # LINE: original image <= 10 MB
CHAT_PREVIEW_MAX_BYTES = 1_000_000  # LINE: preview <= 1 MB
CHAT_ORIGINAL_MAX_SIDE = 2048


def store_cutout(result: CutoutResult, job_id: str, blobs: LocalBlobStore) -> dict:
    """Write the full-size PNG, a chat-size PNG (<= 10 MB) and an opaque preview; return their keys.

    Also what the editor needs to rebuild an EditSource later (the photo itself is the job's input):
    the model's soft mask as a 16-bit greyscale PNG (`mask_png`), the shipped alpha as an 8-bit one,
    and how many separate objects the cutout holds (the chat offers "keep the main object only" when
    there are several).
    """
    keys: dict = store_cutout_files(result, f"results/{job_id}", blobs)
    keys["edit_mask"] = blobs.put(f"results/{job_id}/edit-mask.png", mask_png(result.mask))
    keys["edit_alpha"] = blobs.put(f"results/{job_id}/edit-alpha.png", grey_png(result.alpha))
    keys["objects"] = count_objects(result.alpha)
    return keys


def store_cutout_files(result: CutoutResult, folder: str, blobs: LocalBlobStore) -> dict[str, str]:
    """The cutout's PNG, chat PNG and preview under `folder` (a result, or one edited version of it)."""
    keys = {"cutout": f"{folder}/cutout.png", "preview": f"{folder}/preview.jpg"}
    full = render(result, Background("transparent"), fmt="png")
    blobs.put(keys["cutout"], full.data)
    blobs.put(keys["preview"], checkerboard_preview(result, max_bytes=CHAT_PREVIEW_MAX_BYTES))
    keys["chat"] = keys["cutout"]
    if len(full.data) > CHAT_ORIGINAL_MAX_BYTES or max(full.width, full.height) > CHAT_ORIGINAL_MAX_SIDE:
        keys["chat"] = f"{folder}/chat.png"
        blobs.put(keys["chat"], shrink_png(full.data, CHAT_ORIGINAL_MAX_SIDE, CHAT_ORIGINAL_MAX_BYTES))
    return keys


def grey_png(values: np.ndarray) -> bytes:
    """A [0, 1] float (or 8-bit) map as an 8-bit greyscale PNG: a quarter of an RGBA's bytes."""
    if values.dtype != np.uint8:
        values = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values, "L").save(buffer, "PNG")
    return buffer.getvalue()


def read_grey_png(data: bytes) -> np.ndarray:
    """(h, w) uint8 from grey_png's bytes."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def mask_png(mask: np.ndarray) -> bytes:
    """A model's [0, 1] soft mask as a 16-bit greyscale PNG. The editor reads the model's faint
    response where it did not pick an object (0.001-0.02 over a missed bird; 0.00001 over the
    sky around it): 8 bits keep none of it (regions.NO_EVIDENCE)."""
    levels = np.round(np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0) * 65535.0).astype(np.uint16)
    buffer = io.BytesIO()
    # uint16 -> mode I;16, written as 16-bit grey. Fastest compression: a working file the editor
    # reads, not a deliverable (1024 x 768: 0.04 s and ~0.6 MB; the default level 0.15 s, 0.5 MB).
    Image.fromarray(levels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def read_mask_png(data: bytes) -> np.ndarray:
    """(h, w) float32 in [0, 1] from mask_png's bytes, or from an 8-bit PNG (results stored before)."""
    image = Image.open(io.BytesIO(data))
    if image.mode in ("I;16", "I;16B", "I"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


# A part counts as an object of its own when it holds at least this share of the photo and of
# the largest part (crumbs and stray specks are no "object" to a seller).
OBJECT_MIN_SHARE_OF_PHOTO = 0.002
OBJECT_MIN_SHARE_OF_LARGEST = 0.05


def object_parts(alpha: np.ndarray) -> tuple[np.ndarray, list[int], int]:
    """Label the subject's separate parts (alpha > 0.5, 8-connected) on a <= 512 px copy (every
    `step`-th pixel); return the labels, the label numbers of the sizeable parts (largest first)
    and the step."""
    from scipy import ndimage

    subject = np.asarray(alpha) > (127 if alpha.dtype == np.uint8 else 0.5)
    step = max(1, int(np.ceil(max(subject.shape) / 512)))
    small = subject[::step, ::step]
    labels, count = ndimage.label(small, structure=np.ones((3, 3)))
    if count == 0:
        return labels, [], step
    sizes = np.bincount(labels.ravel())[1:]
    floor = max(OBJECT_MIN_SHARE_OF_PHOTO * small.size, OBJECT_MIN_SHARE_OF_LARGEST * sizes.max())
    order = [int(index) + 1 for index in np.argsort(-sizes) if sizes[index] >= floor]
    return labels, order, step


def count_objects(alpha: np.ndarray) -> int:
    return len(object_parts(alpha)[1])


def shrink_png(data: bytes, max_side: int, max_bytes: int) -> bytes:
    image = Image.open(io.BytesIO(data))
    side = max_side
    while True:
        copy = image.copy()
        copy.thumbnail((side, side), Image.LANCZOS)
        buffer = io.BytesIO()
        copy.save(buffer, "PNG")
        if buffer.tell() <= max_bytes or side <= 256:
            return buffer.getvalue()
        side = side * 3 // 4


def load_stored_cutout(blobs: LocalBlobStore, cutout_key: str, input_key: str | None) -> CutoutResult:
    """Rebuild a CutoutResult from the stored RGBA PNG (and the original, for blurred backgrounds)."""
    rgba = np.asarray(Image.open(io.BytesIO(blobs.get(cutout_key))).convert("RGBA"), dtype=np.float32) / 255.0
    foreground, alpha = rgba[:, :, :3], rgba[:, :, 3]
    original = foreground
    if input_key and blobs.exists(input_key):
        decoded = decode_image(blobs.get(input_key), max_bytes=1 << 31, max_pixels=1 << 31)
        if decoded.shape[:2] == alpha.shape:
            original = decoded
    return CutoutResult(image=original, mask=alpha, alpha=alpha, foreground=foreground)


def store_composite(result: CutoutResult, background: Background, job_id: str, name: str,
                    blobs: LocalBlobStore) -> dict[str, str]:
    rendered = render(result, background, fmt="png" if background.kind == "mask" else "auto")
    key = f"results/{job_id}/{name}.{rendered.extension}"
    blobs.put(key, rendered.data)
    if rendered.content_type == "image/jpeg" and len(rendered.data) <= CHAT_PREVIEW_MAX_BYTES:
        preview_key = key
    elif background.kind == "transparent":  # chat apps show transparency as black: checkerboard
        preview_key = f"results/{job_id}/{name}-preview.jpg"
        blobs.put(preview_key, checkerboard_preview(result, max_bytes=CHAT_PREVIEW_MAX_BYTES))
    else:
        preview_key = f"results/{job_id}/{name}-preview.jpg"
        preview = np.asarray(Image.open(io.BytesIO(rendered.data)).convert("RGB"), dtype=np.float32) / 255.0
        blobs.put(preview_key, encode_jpeg(preview, quality=85, max_bytes=CHAT_PREVIEW_MAX_BYTES, max_side=1024))
    return {"composite": key, "composite_preview": preview_key}


def store_preset(result: CutoutResult, options: PresetOptions, job_id: str, stem: str,
                 blobs: LocalBlobStore) -> dict[str, str]:
    """A preset's file, its chat preview and its size; a sticker also stores the set's main and tab
    images and a ZIP of the three, named as LINE Creators Market asks (01.png, main.png, tab.png)."""
    if options.name == "sticker":
        files = render_sticker_set(result, options.outline)
        keys = {part: blobs.put(f"results/{job_id}/{stem}-{part}.png" if part != "sticker"
                                else f"results/{job_id}/{stem}.png", rendered.data)
                for part, rendered in files.items()}
        preview_key = blobs.put(f"results/{job_id}/{stem}-preview.jpg", png_on_checkerboard(files["sticker"].data))
        zip_key = store_zip(blobs, f"results/{job_id}/{stem}-set.zip",
                            list(zip(set_entry_names(1), (keys["sticker"], keys["main"], keys["tab"]))))
        sticker = files["sticker"]
        return {"composite": keys["sticker"], "composite_preview": preview_key, "sticker_zip": zip_key,
                "size": [sticker.width, sticker.height]}
    rendered = render_preset(result, options)
    key = blobs.put(f"results/{job_id}/{stem}.{rendered.extension}", rendered.data)
    if rendered.content_type == "image/png":
        preview = png_on_checkerboard(rendered.data)
    else:
        colour = np.asarray(Image.open(io.BytesIO(rendered.data)).convert("RGB"), dtype=np.float32) / 255.0
        preview = encode_jpeg(colour, quality=85, max_bytes=CHAT_PREVIEW_MAX_BYTES, max_side=1024)
    preview_key = blobs.put(f"results/{job_id}/{stem}-preview.jpg", preview)
    return {"composite": key, "composite_preview": preview_key, "size": [rendered.width, rendered.height]}


def png_on_checkerboard(data: bytes) -> bytes:
    """An opaque JPEG preview of a transparent PNG (chat apps show transparency as black)."""
    rgba = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), dtype=np.float32) / 255.0
    colour, alpha = rgba[:, :, :3], rgba[:, :, 3]
    return encode_jpeg(compose.over(colour, alpha, compose.checkerboard(alpha.shape)), quality=85,
                       max_bytes=CHAT_PREVIEW_MAX_BYTES, max_side=1024)


def zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    """A ZIP of [(name inside the ZIP, data)]. PNG and JPEG are compressed already: stored as is."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def store_zip(blobs: LocalBlobStore, key: str, members: list[tuple[str, str]]) -> str:
    """One ZIP of stored files ([(name inside the ZIP, blob key)]), itself stored in the blob store
    (so it works on S3 like every other result)."""
    return blobs.put(key, zip_bytes([(name, blobs.get(member_key)) for name, member_key in members]))


def store_poster(poster: np.ndarray, job_id: str, blobs: LocalBlobStore) -> dict[str, str]:
    """A campaign poster: JPEG original (opaque canvas) and a <= 1 MB preview."""
    keys = {"poster": f"results/{job_id}/poster.jpg", "poster_preview": f"results/{job_id}/poster-preview.jpg"}
    blobs.put(keys["poster"], encode_jpeg(poster, quality=92, max_bytes=CHAT_ORIGINAL_MAX_BYTES))
    blobs.put(keys["poster_preview"], encode_jpeg(poster, quality=85, max_bytes=CHAT_PREVIEW_MAX_BYTES, max_side=1024))
    return keys


@dataclass(frozen=True)
class UrlBuilder:
    base_url: str
    signer: object  # storage.urls.UrlSigner

    def url(self, key: str) -> str:
        return f"{self.base_url}/r/{self.signer.sign(key)}/{key.rsplit('/', 1)[-1]}"
