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


def unique_targets(files: list[tuple[Path, Path]], folder: Path, extension: str) -> list[Path]:
    """One output path per input, never two the same (a.jpg and a.heic -> a.png and a-2.png).

    The first input (in the order given) keeps its natural name; later ones get -2, -3 … skipping
    any name another input has naturally. Compared case-insensitively, for macOS and Windows disks.
    """
    natural = [folder / relative / f"{source.stem}.{extension}" for source, relative in files]
    taken: set[str] = set()
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

    if args.jobs < 1:
        print("cutout: -j needs a number of 1 or more", file=sys.stderr)
        return 2
    try:
        background = parse_background(args.bg, args.mask)
    except (ValueError, ImageDecodeError) as error:
        print(f"cutout: bad --bg: {error}", file=sys.stderr)
        return 2
    files, folder_mode = collect_inputs(args.inputs, args.recursive, skip=args.output)
    if not files:
        print("cutout: no images found in the inputs", file=sys.stderr)
        return 2
    if folder_mode and args.output and args.output.suffix.lower() in IMAGE_SUFFIXES:
        print("cutout: several inputs need -o to be a folder", file=sys.stderr)
        return 2
    try:
        fmt = output_format(args.format, args.output, folder_mode)
    except ValueError as error:
        print(f"cutout: {error}", file=sys.stderr)
        return 2

    if folder_mode:
        # Every name fixed before any work starts: collisions get -2, -3 …, and parallel jobs never race.
        folder = args.output or Path("cutouts")
        extension = fmt if fmt != "auto" else ("png" if background.kind in ("transparent", "mask") else "jpg")
        targets: list[Path | None] = list(unique_targets(files, folder, extension))
        count = f"{len(files)} image{'s' if len(files) != 1 else ''}"
        print(f"cutout: writing {count} to {folder.resolve()}", file=sys.stderr)
    else:
        targets = [None] * len(files)

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
            rendered = render(result, background, fmt=fmt, crop=args.crop, shadow=args.shadow)
            target = target or output_path(path, args.output, rendered.extension)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rendered.data)
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
