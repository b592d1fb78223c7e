"""A BlobStore on the local filesystem: keys like 'results/<job>/cutout.png' map to files.

`BlobStore` is the interface every backend implements (put/get/exists/delete/sweep): this
one on disk (the embedded default) and storage.blobs_s3.S3BlobStore; `path()` is the disk's own.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Protocol


class BlobNotFound(KeyError):
    pass


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> str: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def sweep(self, prefix: str, older_than_s: float, now: float | None = None) -> int: ...


class LocalBlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys come from our own code, but never let one escape the store.
        if self.root.resolve() not in path.parents:
            raise ValueError(f"bad blob key {key!r}")
        return path

    def put(self, key: str, data: bytes) -> str:
        """Write atomically (temp file + rename) so a crash never leaves half a file."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temp_name, path)
        finally:
            if os.path.exists(temp_name):
                os.unlink(temp_name)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # a folder is no blob
            raise BlobNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def path(self, key: str) -> Path:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def sweep(self, prefix: str, older_than_s: float, now: float | None = None) -> int:
        """Delete files under `prefix` last written more than `older_than_s` ago; return the count."""
        cutoff = (now or time.time()) - older_than_s
        base = self._path(prefix)
        removed = 0
        if not base.exists():
            return 0
        for path in sorted(base.rglob("*"), reverse=True):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        return removed
