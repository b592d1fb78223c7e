"""Pick each store's backend from the configuration; the defaults are the embedded ones.

CUTOUT_DATABASE_URL=postgresql://... -> PostgresJobStore, else SQLite under the data folder.
CUTOUT_BLOB_URL=s3://bucket/prefix    -> S3BlobStore, else files under the data folder.
Backends beyond the defaults are imported only when chosen, so the embedded service needs none
of their libraries.
"""
from __future__ import annotations

from pathlib import Path

from storage.files import BlobStore, LocalBlobStore
from storage.jobs import JobStore, SqliteJobStore


def open_job_store(database_url: str, data_dir: Path) -> JobStore:
    if not database_url:
        return SqliteJobStore(data_dir / "jobs.sqlite3")
    if database_url.startswith(("postgresql://", "postgres://")):
        from storage.jobs_postgres import PostgresJobStore

        return PostgresJobStore(database_url)
    raise ValueError(f"CUTOUT_DATABASE_URL: unsupported database {database_url.split(':', 1)[0]!r}"
                     " (postgresql://... or unset for SQLite)")


def open_blob_store(blob_url: str, data_dir: Path) -> BlobStore:
    if not blob_url:
        return LocalBlobStore(data_dir / "blobs")
    if blob_url.startswith("s3://"):
        from storage.blobs_s3 import S3BlobStore

        return S3BlobStore(blob_url)
    raise ValueError(f"CUTOUT_BLOB_URL: unsupported store {blob_url!r} (s3://bucket/prefix or unset for files)")
