"""Draw the web page's sample photos, link-preview image and icons (bot/web/static/samples, bot/web/static).

The evaluation photos under ../shared/data are for research use only, so the page's samples are
drawn here instead: a plush teddy bear (fuzzy outline: the hair case), a cosmetics bottle (a
product with hard edges and a glass highlight) and a potted plant (thin leaves). Each is about
800 px, a JPEG of 60-120 kB, plus a 192 px thumbnail for the sample buttons. The link-preview
image (og.jpg, 1200x630) shows the teddy before and after, cut out by the real pipeline.

    .venv/bin/python scripts/make_page_samples.py        # rewrites the files; deterministic
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STATIC = ROOT / "bot" / "web" / "static"
SAMPLES = STATIC / "samples"
SS = 2  # supersampling of every drawing
RNG = np.random.default_rng(14)


def canvas_gradient(size, top, bottom, floor_at=None, floor_top=None, floor_bottom=None):
    width, height = size
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    image = np.broadcast_to(image, (height, width, 3)).copy()
    if floor_at is not None:
        start = int(height * floor_at)
        f = np.linspace(0, 1, height - start, dtype=np.float32)[:, None, None]
        image[start:] = (1 - f) * np.asarray(floor_top, np.float32) + f * np.asarray(floor_bottom, np.float32)
    # a soft vignette and a little sensor noise, so it reads as a photo
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    vignette = 1 - 0.18 * (((xs - width / 2) / width) ** 2 + ((ys - height / 2) / height) ** 2) * 2
    return np.clip(image * vignette[:, :, None], 0, 1)


def mask_from(draw_fn, size):
    layer = Image.new("L", (size[0] * SS, size[1] * SS), 0)
    draw_fn(ImageDraw.Draw(layer), SS)
    return np.asarray(layer.resize(size, Image.LANCZOS), dtype=np.float32) / 255.0


def paint(canvas, mask, colour):
    colour = np.broadcast_to(np.asarray(colour, np.float32), canvas.shape) if np.ndim(colour) == 1 else colour
    return canvas * (1 - mask[:, :, None]) + colour * mask[:, :, None]


def noise(shape, scale, octaves=3):
    """Smooth value noise in [-1, 1]."""
    height, width = shape
    total = np.zeros(shape, np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        cells = max(2, int(scale * 2 ** octave))
        grid = RNG.standard_normal((cells + 1, cells + 1)).astype(np.float32)
        image = Image.fromarray(grid, "F").resize((width, height), Image.BICUBIC)
        total += amplitude * np.asarray(image)
        amplitude *= 0.5
    return total / np.abs(total).max()


def shadow(size, box, blur, strength):
    mask = mask_from(lambda d, s: d.ellipse([v * s for v in box], fill=255), size)
    blurred = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur)),
                         dtype=np.float32) / 255.0
    return blurred * strength


def teddy(size=(800, 800)):
    width, height = size
    image = canvas_gradient(size, (0.80, 0.87, 0.93), (0.70, 0.78, 0.86), 0.72, (0.93, 0.89, 0.83), (0.86, 0.80, 0.72))
    image *= 1 - shadow(size, (200, 640, 600, 730), 25, 0.45)[:, :, None]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)

    def ellipse_sdf(cx, cy, rx, ry):
        return (np.hypot((xs - cx) / rx, (ys - cy) / ry) - 1) * min(rx, ry)

    parts = [(400, 490, 165, 180), (400, 270, 130, 118), (290, 175, 48, 48), (510, 175, 48, 48),
             (255, 470, 58, 105), (545, 470, 58, 105), (315, 640, 75, 62), (485, 640, 75, 62)]
    sdf = np.min([ellipse_sdf(*p) for p in parts], axis=0)
    fur = noise((height, width), 90, 2) * 6 + noise((height, width), 14, 2) * 4
    alpha = np.clip(0.5 - (sdf + fur) / 2.0, 0, 1)
    shade = np.clip(1.05 - 0.25 * ((xs - 360) / 400) - 0.2 * ((ys - 300) / 600), 0.55, 1.1)  # lit from top left
    texture = 1 + 0.10 * noise((height, width), 160, 2)
    fur_colour = np.stack([0.62 * shade * texture, 0.42 * shade * texture, 0.25 * shade * texture], axis=2)
    image = paint(image, alpha, np.clip(fur_colour, 0, 1))
    for part, colour in (((400, 310, 62, 48), (0.88, 0.76, 0.60)), ((400, 520, 95, 105), (0.80, 0.64, 0.46)),
                         ((290, 178, 24, 24), (0.86, 0.66, 0.55)), ((510, 178, 24, 24), (0.86, 0.66, 0.55))):
        inner = np.clip(0.5 - (ellipse_sdf(*part) + fur * 0.4) / 2.0, 0, 1)
        image = paint(image, inner, np.asarray(colour) * texture[:, :, None] * np.clip(shade, 0.8, 1.05)[:, :, None])
    for cx in (352, 448):
        image = paint(image, np.clip(0.5 - ellipse_sdf(cx, 245, 13, 15) / 1.2, 0, 1), (0.06, 0.05, 0.05))
        image = paint(image, np.clip(0.5 - ellipse_sdf(cx + 4, 240, 4, 4) / 1.2, 0, 1), (0.95, 0.95, 0.95))
    image = paint(image, np.clip(0.5 - ellipse_sdf(400, 292, 22, 15) / 1.2, 0, 1), (0.12, 0.07, 0.06))
    smile = mask_from(lambda d, s: d.arc([370 * s, 290 * s, 430 * s, 338 * s], 30, 150, fill=255, width=5 * s), size)
    image = paint(image, smile, (0.15, 0.08, 0.06))
    bow = mask_from(lambda d, s: (d.polygon([(400 * s, 385 * s), (340 * s, 360 * s), (345 * s, 415 * s)], fill=255),
                                  d.polygon([(400 * s, 385 * s), (460 * s, 360 * s), (455 * s, 415 * s)], fill=255),
                                  d.ellipse([388 * s, 373 * s, 412 * s, 397 * s], fill=255)), size)
    image = paint(image, bow, (0.80, 0.12, 0.22))
    return image


def bottle(size=(800, 800)):
    width, height = size
    image = canvas_gradient(size, (0.98, 0.90, 0.88), (0.95, 0.80, 0.78), 0.70, (0.96, 0.86, 0.82), (0.90, 0.76, 0.72))
    image *= 1 - shadow(size, (270, 655, 560, 715), 18, 0.5)[:, :, None]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    left, right = 290, 510
    body = mask_from(lambda d, s: d.rounded_rectangle([left * s, 300 * s, right * s, 690 * s], 38 * s, fill=255), size)
    across = np.clip((xs - left) / (right - left), 0, 1)
    cylinder = 0.55 + 0.55 * np.clip(np.sin(np.pi * across), 0, 1) ** 0.7
    glass = np.stack([0.30 * cylinder, 0.55 * cylinder, 0.62 * cylinder], axis=2)
    image = paint(image, body, np.clip(glass, 0, 1))
    highlight = mask_from(lambda d, s: d.rounded_rectangle([318 * s, 330 * s, 338 * s, 650 * s], 10 * s, fill=255), size)
    image = paint(image, highlight * 0.75, (1, 1, 1))
    label = mask_from(lambda d, s: d.rectangle([left * s, 430 * s, right * s, 580 * s], fill=255), size)
    image = paint(image, label, np.clip(np.stack([0.97 * cylinder, 0.95 * cylinder, 0.90 * cylinder], axis=2) * 0.9, 0, 1))
    text = Image.new("L", size, 0)
    draw = ImageDraw.Draw(text)
    font = ImageFont.load_default(size=40)
    draw.text((400, 485), "AURORA", font=font, fill=255, anchor="mm")
    small = ImageFont.load_default(size=16)
    draw.text((400, 530), "SERUM · 50 ml", font=small, fill=255, anchor="mm")
    image = paint(image, np.asarray(text, np.float32) / 255.0, (0.18, 0.20, 0.24))
    neck = mask_from(lambda d, s: d.rectangle([370 * s, 262 * s, 430 * s, 305 * s], fill=255), size)
    image = paint(image, neck, (0.55, 0.57, 0.62))
    cap_across = np.clip((xs - 345) / 110, 0, 1)
    gold = 0.65 + 0.45 * np.clip(np.sin(np.pi * cap_across), 0, 1) ** 1.5
    cap = mask_from(lambda d, s: d.rounded_rectangle([345 * s, 140 * s, 455 * s, 268 * s], 16 * s, fill=255), size)
    image = paint(image, cap, np.clip(np.stack([0.80 * gold, 0.64 * gold, 0.32 * gold], axis=2), 0, 1))
    return image


def plant(size=(800, 800)):
    width, height = size
    image = canvas_gradient(size, (0.95, 0.94, 0.90), (0.90, 0.88, 0.83), 0.74, (0.78, 0.66, 0.52), (0.66, 0.54, 0.41))
    image *= 1 - shadow(size, (250, 700, 560, 760), 16, 0.5)[:, :, None]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    leaves = Image.new("L", (width * SS, height * SS), 0)
    tone = Image.new("L", (width * SS, height * SS), 0)
    rng = np.random.default_rng(3)
    for index in range(26):
        angle = rng.uniform(-2.6, -0.55)
        length = rng.uniform(150, 300)
        leaf_w = rng.uniform(26, 44)
        base = np.array([400 + rng.uniform(-25, 25), 520.0])
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        points = []
        for t in np.linspace(0, 1, 24):
            bend = 0.25 * length * t * t
            centre = base + direction * length * t + np.array([0, bend])
            half = leaf_w * np.sin(np.pi * t) ** 0.8
            points.append(centre + normal * half)
        for t in np.linspace(1, 0, 24):
            bend = 0.25 * length * t * t
            centre = base + direction * length * t + np.array([0, bend])
            half = leaf_w * np.sin(np.pi * t) ** 0.8
            points.append(centre - normal * half)
        polygon = [(float(x) * SS, float(y) * SS) for x, y in points]
        ImageDraw.Draw(leaves).polygon(polygon, fill=255)
        ImageDraw.Draw(tone).polygon(polygon, fill=int(90 + 150 * rng.uniform()))
    leaf_mask = np.asarray(leaves.resize(size, Image.LANCZOS), np.float32) / 255.0
    leaf_tone = np.asarray(tone.resize(size, Image.BILINEAR), np.float32) / 255.0
    veins = 1 + 0.08 * noise((height, width), 60, 2)
    green = np.stack([0.16 + 0.12 * leaf_tone, 0.38 + 0.28 * leaf_tone, 0.16 + 0.08 * leaf_tone], axis=2) * veins[:, :, None]
    image = paint(image, leaf_mask, np.clip(green, 0, 1))
    pot = mask_from(lambda d, s: d.polygon([(285 * s, 540 * s), (515 * s, 540 * s), (480 * s, 730 * s), (320 * s, 730 * s)],
                                           fill=255), size)
    across = np.clip((xs - 285) / 230, 0, 1)
    terracotta = 0.7 + 0.4 * np.clip(np.sin(np.pi * across), 0, 1) ** 0.8
    image = paint(image, pot, np.clip(np.stack([0.74 * terracotta, 0.40 * terracotta, 0.26 * terracotta], axis=2), 0, 1))
    rim = mask_from(lambda d, s: d.rounded_rectangle([270 * s, 515 * s, 530 * s, 570 * s], 8 * s, fill=255), size)
    image = paint(image, rim, np.clip(np.stack([0.80 * terracotta, 0.45 * terracotta, 0.30 * terracotta], axis=2), 0, 1))
    return image


def to_image(array: np.ndarray) -> Image.Image:
    noisy = array + RNG.normal(0, 0.008, array.shape).astype(np.float32)
    return Image.fromarray((np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8))


def save_jpeg(image: Image.Image, path: Path, quality: int = 86) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality, optimize=True, progressive=True)
    print(f"{path.relative_to(ROOT)}: {image.size[0]}x{image.size[1]}, {path.stat().st_size // 1024} kB")


def icons() -> None:
    """favicon.ico (16, 32, 48), apple-touch-icon.png (180): scissors on LINE-like green."""
    size = 512
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle([0, 0, size - 1, size - 1], 110, fill=(4, 120, 58, 255))
    white = (255, 255, 255, 255)
    draw.ellipse([96, 300, 216, 420], outline=white, width=34)
    draw.ellipse([296, 300, 416, 420], outline=white, width=34)
    draw.line([(190, 318), (360, 90)], fill=white, width=38)
    draw.line([(322, 318), (152, 90)], fill=white, width=38)
    icon.resize((180, 180), Image.LANCZOS).save(STATIC / "apple-touch-icon.png")
    icon.save(STATIC / "favicon.ico", sizes=[(16, 16), (32, 32), (48, 48)])
    print("bot/web/static/favicon.ico, bot/web/static/apple-touch-icon.png")


def link_preview(teddy_image: Image.Image) -> None:
    """og.jpg: the teddy before (left) and cut out onto a clean backdrop (right), with the name."""
    from pipeline.cutout import Pipeline

    photo = np.asarray(teddy_image, dtype=np.float32) / 255.0
    result = Pipeline().cutout(photo)
    canvas = Image.new("RGB", (1200, 630), (246, 247, 249))
    before = teddy_image.resize((470, 470), Image.LANCZOS)
    canvas.paste(before, (60, 100))
    rgba = Image.fromarray((np.dstack([result.foreground, result.alpha]) * 255 + 0.5).clip(0, 255).astype(np.uint8), "RGBA")
    rgba = rgba.resize((470, 470), Image.LANCZOS)
    board = Image.new("RGB", (470, 470), (255, 255, 255))
    cells = ImageDraw.Draw(board)
    for y in range(0, 470, 24):
        for x in range(0, 470, 24):
            if (x // 24 + y // 24) % 2:
                cells.rectangle([x, y, x + 23, y + 23], fill=(222, 224, 228))
    board.paste(rgba, (0, 0), rgba)
    canvas.paste(board, (670, 100))
    draw = ImageDraw.Draw(canvas)
    draw.polygon([(560, 320), (600, 335), (560, 350)], fill=(4, 120, 58))
    draw.rectangle([540, 330, 565, 340], fill=(4, 120, 58))
    font_path = Path.home() / ".cache" / "cutout" / "NotoSansTC_700Bold.ttf"
    font = ImageFont.truetype(str(font_path), 44) if font_path.exists() else ImageFont.load_default(size=44)
    draw.text((60, 32), "Cutout Bot · AI 一鍵去背", font=font, fill=(20, 24, 28))
    canvas.save(STATIC / "og.jpg", quality=88, optimize=True, progressive=True)
    print(f"bot/web/static/og.jpg: {(STATIC / 'og.jpg').stat().st_size // 1024} kB")


def main() -> None:
    made = {}
    for name, draw in (("teddy", teddy), ("bottle", bottle), ("plant", plant)):
        image = to_image(draw())
        save_jpeg(image, SAMPLES / f"{name}.jpg")
        thumb = image.copy()
        thumb.thumbnail((192, 192), Image.LANCZOS)
        save_jpeg(thumb, SAMPLES / f"{name}-thumb.jpg", quality=82)
        made[name] = image
    icons()
    if "--no-preview" not in sys.argv:
        link_preview(made["teddy"])


if __name__ == "__main__":
    main()
