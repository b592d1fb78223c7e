"""The `cutout` command: photos in, transparent PNGs (or composites) out.

    cutout photo.jpg -o out.png
    cutout photos/ -o cutouts/ --bg white --crop
    cutout models fetch [NAME]
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff", ".gif"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cutout",
        description="Cut the subject out of photos (hair included). `cutout models fetch` pre-fetches models.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("-o", "--output", type=Path,
                        help="output file (one input) or folder (several inputs or a folder)")
    parser.add_argument("--bg", help="background: a colour (white, #ff8800, 255,136,0), an image file, or 'blur'")
    parser.add_argument("--mask", action="store_true", help="write the alpha mask only (greyscale PNG)")
    parser.add_argument("--no-matting", action="store_true", help="skip edge refinement (faster, coarser hair)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print what each refinement step did")
    parser.add_argument("--crop", action="store_true", help="crop to the subject with a small margin")
    parser.add_argument("--shadow", action="store_true", help="add a soft drop shadow")
    parser.add_argument("--format", choices=("png", "jpg", "auto"), default="auto",
                        help="output format (auto: PNG for transparency, else JPEG)")
    parser.add_argument("--model", default=None, help="segmentation model (isnet, isnet-small, u2netp)")
    parser.add_argument("--model-dir", type=Path, help="folder holding model files (else CUTOUT_MODEL_DIR / cache)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def build_models_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cutout models", description="Manage model files.")
    sub = parser.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch", help="fetch and verify models into the cache")
    fetch.add_argument("names", nargs="*", help="model names (default: the ones the pipeline uses)")
    fetch.add_argument("--model-dir", type=Path)
    sub.add_parser("list", help="list known models")
    return parser


def models_main(argv: list[str]) -> int:
    from models import MODEL_SPECS, ModelUnavailableError, ensure_model, get_spec
    from pipeline.cutout import ASSIST_MODEL, CutoutOptions

    args = build_models_parser().parse_args(argv)
    if args.action == "list":
        for spec in MODEL_SPECS.values():
            print(f"{spec.name:12} {spec.task:8} {spec.size_bytes / 1e6:6.1f} MB  {spec.licence}")
        return 0
    defaults = CutoutOptions()
    from models.specs import CAPTION_FONT

    # The optional assist model too: turning fusion on should not wait for a download.
    names = args.names or [defaults.model, ASSIST_MODEL, CAPTION_FONT]
    status = 0
    for name in names:
        try:
            print(f"{name}: {ensure_model(get_spec(name), args.model_dir)}")
        except (KeyError, ModelUnavailableError) as error:
            print(f"cutout: {error.args[0]}", file=sys.stderr)
            status = 1
    return status


def collect_inputs(inputs: list[Path]) -> tuple[list[Path], bool]:
    """-> (image files, whether the output must be a folder)."""
    files: list[Path] = []
    folder_mode = len(inputs) > 1
    for item in inputs:
        if item.is_dir():
            folder_mode = True
            files.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(item)
    return files, folder_mode


def parse_background(value: str | None, mask: bool):
    from pipeline.compose import parse_color
    from pipeline.decode import decode_image
    from pipeline.render import Background

    if mask:
        return Background("mask")
    if value is None:
        return Background("transparent")
    if value == "blur":
        return Background("blur")
    candidate = Path(value)
    if candidate.is_file():
        return Background("image", image=decode_image(candidate.read_bytes()))
    return Background("color", color=parse_color(value))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["models"]:
        return models_main(argv[1:])
    args = build_parser().parse_args(argv)

    from models import ModelUnavailableError
    from pipeline.cutout import CutoutOptions, Pipeline
    from pipeline.decode import ImageDecodeError, decode_image
    from pipeline.render import render

    try:
        background = parse_background(args.bg, args.mask)
    except (ValueError, ImageDecodeError) as error:
        print(f"cutout: bad --bg: {error}", file=sys.stderr)
        return 2
    files, folder_mode = collect_inputs(args.inputs)
    if not files:
        print("cutout: no images found in the inputs", file=sys.stderr)
        return 2
    if folder_mode and args.output and args.output.suffix.lower() in IMAGE_SUFFIXES:
        print("cutout: several inputs need -o to be a folder", file=sys.stderr)
        return 2

    options = CutoutOptions(matting=not args.no_matting, **({"model": args.model} if args.model else {}))
    pipeline = Pipeline(model_dir=args.model_dir)
    try:
        pipeline.warm_up(options)
    except (KeyError, ModelUnavailableError) as error:
        print(f"cutout: {error.args[0]}", file=sys.stderr)
        return 1

    failures = 0
    progress = None
    if len(files) > 1 and not args.quiet:
        from tqdm import tqdm

        progress = tqdm(total=len(files), unit="image", file=sys.stderr)
    for path in files:
        try:
            image = decode_image(path.read_bytes())
            result = pipeline.cutout(image, options)
            rendered = render(result, background, fmt=args.format, crop=args.crop, shadow=args.shadow)
            target = output_path(path, args.output, folder_mode, rendered.extension)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rendered.data)
            for note in result.notes if args.verbose else ():
                print(f"cutout: {path}: note: {note}", file=sys.stderr)
            if not result.subject_found:
                print(f"cutout: {path}: no clear subject found", file=sys.stderr)
        except (OSError, ImageDecodeError) as error:
            failures += 1
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            print(f"cutout: {path}: {reason}", file=sys.stderr)
        if progress:
            progress.update(1)
    if progress:
        progress.close()
    if failures:
        print(f"cutout: {failures} of {len(files)} images failed", file=sys.stderr)
    return 1 if failures else 0


def output_path(source: Path, output: Path | None, folder_mode: bool, extension: str) -> Path:
    if folder_mode:
        return (output or Path("cutouts")) / f"{source.stem}.{extension}"
    if output is None:
        return source.with_name(f"{source.stem}-cutout.{extension}")
    if output.is_dir():
        return output / f"{source.stem}.{extension}"
    return output


if __name__ == "__main__":
    sys.exit(main())
