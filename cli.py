"""The `cutout` command: photos in, transparent PNGs (or composites) out.

    cutout photo.jpg -o out.png
    cutout photos/ -o cutouts/ --bg white --crop
    cutout products/ -o shop/ --preset product --size 2000 --margin 8% --shadow
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
    parser.add_argument("--shadow", action="store_true",
                        help="add a soft drop shadow (with --preset: a contact shadow below the subject)")
    presets = parser.add_argument_group(
        "presets", "shop- and social-ready canvases, the same rule for every photo of a folder")
    presets.add_argument("--preset", choices=("product", "sticker", "post", "story", "custom"),
                         help="product: square on white (2000 px, 8%% margin); sticker: LINE sticker (<= 370x320, "
                              "even size, 10 px margin, white outline) plus main.png and tab.png for a folder; "
                              "post: 1080x1080 or 1080x1350; story: 1080x1920; custom: --size WxH")
    presets.add_argument("--size", help="canvas: 2000 (square) or WIDTHxHEIGHT, e.g. 1080x1350")
    presets.add_argument("--margin", help="space around the subject: 8%% (of the shorter side) or 40px")
    presets.add_argument("--position", help="center, bottom, top, or 'x%% y%%' (0%% left/top .. 100%% right/bottom)")
    presets.add_argument("--fit", choices=("fit", "fill"), help="custom: whole subject inside (fit) or canvas "
                                                                 "filled, subject cut at the edges (fill)")
    presets.add_argument("--no-outline", action="store_true", help="sticker: no white die-cut outline")
    parser.add_argument("--format", choices=("png", "jpg", "auto"), default="auto",
                        help="output format (auto: the output file's extension, else PNG for transparency "
                             "and JPEG otherwise); a clash with -o's extension is an error")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="also take images in sub-folders, keeping the sub-folders under the output folder")
    parser.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                        help="work on N files at once (default 1), sharing one copy of the models; each extra "
                             "job holds one more photo in memory (peak about 2.4 GB in all for one 24 MP "
                             "photo), so raise N only where memory allows; the models already use every core")
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
    from pipeline.person_matte import PERSON_MODEL
    from pipeline.second_opinion import SECOND_OPINION_MODEL

    args = build_models_parser().parse_args(argv)
    if args.action == "list":
        for spec in MODEL_SPECS.values():
            print(f"{spec.name:12} {spec.task:8} {spec.size_bytes / 1e6:6.1f} MB  {spec.licence}")
        return 0
    defaults = CutoutOptions()
    from models.specs import CAPTION_FONT

    # The second-opinion model (also the optional fusion's): a cutout that asks it should not wait for a download.
    names = args.names or list(dict.fromkeys([defaults.model, PERSON_MODEL, SECOND_OPINION_MODEL, ASSIST_MODEL,
                                              CAPTION_FONT]))
    status = 0
    for name in names:
        try:
            print(f"{name}: {ensure_model(get_spec(name), args.model_dir)}")
        except (KeyError, ModelUnavailableError) as error:
            print(f"cutout: {error.args[0]}", file=sys.stderr)
            status = 1
    return status


def collect_inputs(inputs: list[Path], recursive: bool = False,
                   skip: Path | None = None) -> tuple[list[tuple[Path, Path]], bool]:
    """-> ([(image file, sub-folder of the output it belongs in)], whether the output must be a folder).

    Folders give their images sorted by path; with `recursive`, sub-folders too (hidden ones and
    `skip`, the output folder, left out), each under its path relative to the folder given.
    """
    files: list[tuple[Path, Path]] = []
    folder_mode = len(inputs) > 1
    skip = skip.resolve() if skip else None
    for item in inputs:
        if item.is_dir():
            folder_mode = True
            found = item.rglob("*") if recursive else item.iterdir()
            # An output folder inside the input folder holds our own results, not more inputs.
            below = skip if recursive and skip and skip != item.resolve() else None
            for path in sorted(found):
                relative = path.relative_to(item)
                if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                    continue
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if below and path.resolve().is_relative_to(below):
                    continue
                files.append((path, relative.parent))
        else:
            files.append((item, Path()))
    return files, folder_mode


def unique_targets(files: list[tuple[Path, Path]], folder: Path, extension: str,
                   reserved: tuple[str, ...] = ()) -> list[Path]:
    """One output path per input, never two the same (a.jpg and a.heic -> a.png and a-2.png).

    The first input (in the order given) keeps its natural name; later ones get -2, -3 … skipping
    any name another input has naturally. Compared case-insensitively, for macOS and Windows disks.
    """
    natural = [folder / relative / f"{source.stem}.{extension}" for source, relative in files]
    # Names the run writes itself (a sticker set's main.png, tab.png) are never given to an input.
    taken: set[str] = {str(folder / f"{name}.{extension}").casefold() for name in reserved}
    targets: list[Path | None] = []
    for path in natural:
        key = str(path).casefold()
        targets.append(None if key in taken else path)
        taken.add(key)
    for index, (source, relative) in enumerate(files):
        if targets[index] is not None:
            continue
        number = 2
        while True:
            candidate = folder / relative / f"{source.stem}-{number}.{extension}"
            if str(candidate).casefold() not in taken:
                break
            number += 1
        taken.add(str(candidate).casefold())
        targets[index] = candidate
    return targets  # type: ignore[return-value]


STICKER_SET_FILES = ("main", "tab")
FORMAT_OF_SUFFIX = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg"}


def output_format(requested: str, output: Path | None, folder_mode: bool) -> str:
    """The format to write: --format, else the output file's extension, else auto. ValueError on a clash."""
    if folder_mode or output is None or output.is_dir() or not output.suffix:
        return requested
    suffix = output.suffix.lower()
    if suffix not in FORMAT_OF_SUFFIX:
        raise ValueError(f"cannot write {suffix} files; name the output .png or .jpg")
    implied = FORMAT_OF_SUFFIX[suffix]
    if requested not in ("auto", implied):
        raise ValueError(f"--format {requested} does not match the output's extension {output.suffix}; "
                         "use one or the other")
    return implied


def parse_background(value: str | None, mask: bool):
    from pipeline.outputs.compose import parse_color
    from pipeline.decode import decode_image
    from pipeline.outputs.render import Background

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


PRESET_ONLY_FLAGS = ("size", "margin", "position", "fit", "no_outline")


def preset_options(args: argparse.Namespace, background):
    """The --preset flags as resolved PresetOptions (None without --preset); ValueError when they do not fit."""
    from pipeline.outputs.presets import PresetOptions, parse_margin, parse_position, parse_size

    if args.preset is None:
        given = [f"--{name.replace('_', '-')}" for name in PRESET_ONLY_FLAGS if getattr(args, name)]
        if given:
            raise ValueError(f"{', '.join(given)} need --preset")
        return None
    if args.crop:
        raise ValueError("--crop does not combine with --preset (the preset sets the canvas)")
    options = PresetOptions(
        args.preset,
        size=parse_size(args.size) if args.size else None,
        margin=parse_margin(args.margin) if args.margin else None,
        position=parse_position(args.position) if args.position else None,
        fit=args.fit or "fit", shadow=args.shadow, outline=not args.no_outline, background=background,
    ).resolved()
    return options


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["models"]:
        return models_main(argv[1:])
    args = build_parser().parse_args(argv)

    from models import ModelUnavailableError
    from pipeline.cutout import CutoutOptions, Pipeline
    from pipeline.decode import ImageDecodeError, decode_image
    from pipeline.outputs.presets import render_preset, render_sticker_set
    from pipeline.outputs.render import render

    if args.jobs < 1:
        print("cutout: -j needs a number of 1 or more", file=sys.stderr)
        return 2
    try:
        background = parse_background(args.bg, args.mask)
    except (ValueError, ImageDecodeError) as error:
        print(f"cutout: bad --bg: {error}", file=sys.stderr)
        return 2
    try:
        # A preset brings its own background (white for products) unless --bg or --mask says otherwise.
        preset = preset_options(args, background if args.bg or args.mask else None)
    except ValueError as error:
        print(f"cutout: {error}", file=sys.stderr)
        return 2
    if preset is not None:
        background = preset.background
    files, folder_mode = collect_inputs(args.inputs, args.recursive, skip=args.output)
    if not files:
        print("cutout: no images found in the inputs", file=sys.stderr)
        return 2
    missing = [path for path, _ in files if not path.exists()]
    if len(missing) == len(files):  # nothing to cut out: said at once, without loading the models
        for path in missing:
            print(f"cutout: {path}: no such file", file=sys.stderr)
        return 1
    if folder_mode and args.output and args.output.suffix.lower() in IMAGE_SUFFIXES:
        print("cutout: several inputs need -o to be a folder", file=sys.stderr)
        return 2
    try:
        fmt = output_format(args.format, args.output, folder_mode)
        if preset is not None and preset.name == "sticker" and fmt == "jpg":
            raise ValueError("LINE stickers are PNG files with transparency: name the output .png")
    except ValueError as error:
        print(f"cutout: {error}", file=sys.stderr)
        return 2

    if folder_mode:
        # Every name fixed before any work starts: collisions get -2, -3 …, and parallel jobs never race.
        folder = args.output or Path("cutouts")
        extension = fmt if fmt != "auto" else ("png" if background.kind in ("transparent", "mask") else "jpg")
        # A sticker folder also gets the set's main.png and tab.png, made from the first photo.
        set_names = STICKER_SET_FILES if preset is not None and preset.name == "sticker" else ()
        targets: list[Path | None] = list(unique_targets(files, folder, extension, reserved=set_names))
        count = f"{len(files)} image{'s' if len(files) != 1 else ''}"
        print(f"cutout: writing {count} to {folder.resolve()}", file=sys.stderr)
    else:
        targets, set_names = [None] * len(files), ()

    options = CutoutOptions(matting=not args.no_matting, **({"model": args.model} if args.model else {}))
    pipeline = Pipeline(model_dir=args.model_dir)
    try:
        pipeline.warm_up(options)
    except (KeyError, ModelUnavailableError) as error:
        print(f"cutout: {error.args[0]}", file=sys.stderr)
        return 1

    def one(path: Path, target: Path | None) -> tuple[bool, list[str]]:
        """-> (worked, lines for stderr). Runs on a worker thread when -j > 1; prints nothing itself."""
        lines: list[str] = []
        try:
            image = decode_image(path.read_bytes())
            result = pipeline.cutout(image, options)
            lines += [f"cutout: {path}: note: {note}" for note in result.notes] if args.verbose else []
            if not result.subject_found:
                lines.append(f"cutout: {path}: no subject found (nothing stands out from the background); "
                             "nothing written")
                return False, lines
            if preset is None:
                rendered = render(result, background, fmt=fmt, crop=args.crop, shadow=args.shadow)
            else:
                rendered = render_preset(result, preset, fmt)
            target = target or output_path(path, args.output, rendered.extension)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rendered.data)
            if folder_mode and set_names and path == files[0][0]:
                for name, item in render_sticker_set(result, preset.outline).items():
                    if name in set_names:
                        (folder / f"{name}.png").write_bytes(item.data)
            return True, lines
        except (OSError, ImageDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            return False, lines + [f"cutout: {path}: {reason}"]

    progress = None
    if len(files) > 1 and not args.quiet:
        from tqdm import tqdm

        progress = tqdm(total=len(files), unit="image", file=sys.stderr)

    def report(line: str) -> None:
        # Through tqdm while the bar is up, so a message never lands inside it.
        if progress is not None:
            progress.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    failures = 0
    jobs = min(args.jobs, len(files))
    if jobs == 1:
        outcomes = (one(path, target) for (path, _), target in zip(files, targets))
    else:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        executor = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cutout")
        futures = [executor.submit(one, path, target) for (path, _), target in zip(files, targets)]
        outcomes = (future.result() for future in as_completed(futures))
    try:
        for worked, lines in outcomes:
            for line in lines:
                report(line)
            failures += not worked
            if progress is not None:
                progress.update(1)
    finally:
        if jobs > 1:
            executor.shutdown(wait=True, cancel_futures=True)
        if progress is not None:
            progress.close()
    if failures:
        print(f"cutout: {failures} of {len(files)} images failed", file=sys.stderr)
    return 1 if failures else 0


def output_path(source: Path, output: Path | None, extension: str) -> Path:
    """Where a single input's result goes (folder runs name theirs with `unique_targets`)."""
    if output is None:
        return source.with_name(f"{source.stem}-cutout.{extension}")
    if output.is_dir():
        return output / f"{source.stem}.{extension}"
    return output


if __name__ == "__main__":
    sys.exit(main())
