"""A BlobStore on any S3-compatible service: CUTOUT_BLOB_URL=s3://bucket/prefix.

Endpoint, region and credentials come from the standard AWS variables (AWS_ENDPOINT_URL,
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or an instance role), read by boto3.
Keys are the same as on disk ('results/<job>/cutout.png'), under the prefix. Every web process
serves results by streaming them from here through its own signed /r/<token> links, so a link
works whichever process or machine answers it. Expired objects go with the sweeper (listing by
LastModified) or, cheaper at scale, a bucket lifecycle rule on the prefix (docs/scaling.md).
"""
from __future__ import annotations

import mimetypes
import time
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.files import BlobNotFound

MISSING = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix/'); the prefix may be empty."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


class S3BlobStore:
    def __init__(self, url: str, client=None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        # A few retries with backoff ride out a store's brief 503 SlowDown.
        self.client = client or boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    def _object(self, key: str) -> str:
        # The same confinement as the disk store: no absolute keys, no '..' segments.
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad blob key {key!r}")
        return self.prefix + key

    def put(self, key: str, data: bytes) -> str:
        """One PUT: S3 makes an object visible whole or not at all."""
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data, ContentType=content_type)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._object(key))["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING:
                raise BlobNotFound(key) from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING:
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def sweep(self, prefix: str, older_than_s: float, now: float | None = None) -> int:
        """Delete objects under `prefix` last written more than `older_than_s` ago; return the count."""
        cutoff = (now or time.time()) - older_than_s
        expired: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._object(prefix.rstrip("/")) + "/")
        for page in pages:
            expired += [item["Key"] for item in page.get("Contents", [])
                        if item["LastModified"].timestamp() < cutoff]
        for start in range(0, len(expired), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in expired[start:start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(expired)
