"""Job table, blob store and signed URLs: dedupe, resume, expiry, sweeping, tamper-proofing."""
from __future__ import annotations

import os
import time

import pytest

from storage.files import BlobNotFound, LocalBlobStore
from storage.jobs import DuplicateJob, JobStatus, SqliteJobStore
from storage.urls import ExpiredToken, InvalidToken, UrlSigner, load_or_create_secret


def test_jobs_dedupe_resume_and_survive_reopening(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    jobs = SqliteJobStore(path)
    first = jobs.create("photo", "line", "U1", {"a": 1}, dedupe_key="line:e1")
    with pytest.raises(DuplicateJob):
        jobs.create("photo", "line", "U1", {"a": 1}, dedupe_key="line:e1")
    second = jobs.create("text", "line", "U1", {}, dedupe_key="line:e2")
    jobs.mark_started(second.id)
    jobs.mark_finished(second.id, {"ok": True})

    reopened = SqliteJobStore(path)  # a restart
    assert [job.id for job in reopened.resumable()] == [first.id]
    assert reopened.get(second.id).status is JobStatus.FINISHED and reopened.get(second.id).result == {"ok": True}
    assert reopened.count_recent("line", "U1", time.time() - 60) == 1  # photos only
    assert reopened.first_sighting("x") and not reopened.first_sighting("x")
    reopened.update_user_state("line", "U1", language="en")
    assert SqliteJobStore(path).user_state("line", "U1") == {"language": "en"}


def test_blob_store_is_atomic_confined_and_swept(tmp_path):
    blobs = LocalBlobStore(tmp_path)
    blobs.put("results/j1/cutout.png", b"png")
    assert blobs.get("results/j1/cutout.png") == b"png"
    with pytest.raises(ValueError):
        blobs.put("../escape", b"x")
    with pytest.raises(BlobNotFound):
        blobs.get("results/none")
    old = time.time() - 1000
    os.utime(blobs.path("results/j1/cutout.png"), (old, old))
    blobs.put("results/j2/cutout.png", b"new")
    assert blobs.sweep("results", older_than_s=500) == 1
    assert not blobs.exists("results/j1/cutout.png") and blobs.exists("results/j2/cutout.png")


def test_signed_urls_expire_and_resist_tampering(tmp_path):
    secret = load_or_create_secret(tmp_path / "secret.key")
    assert load_or_create_secret(tmp_path / "secret.key") == secret  # survives restarts
    signer = UrlSigner(secret, default_ttl_s=60)
    token = signer.sign("results/j1/cutout.png", now=1000)
    assert signer.verify(token, now=1030) == "results/j1/cutout.png"
    with pytest.raises(ExpiredToken):
        signer.verify(token, now=1061)
    payload, mac = token.split(".")
    forged = signer.sign("results/j2/cutout.png", now=1000).split(".")[0] + "." + mac
    with pytest.raises(InvalidToken):
        signer.verify(forged, now=1030)
    with pytest.raises(InvalidToken):
        UrlSigner(b"other", 60).verify(token, now=1030)
    with pytest.raises(InvalidToken):
        signer.verify("garbage", now=1030)
