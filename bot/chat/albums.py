"""Photo sets (a LINE imageSet, one Messenger message with several photos): who belongs, when to answer.

Every photo of a set is still its own job (deduplicated on its own event id, cut out on its own);
one more job, kind "album", answers the whole set with one summary. The set's bookkeeping lives in
the shared stores, so it holds across threads, processes and restarts:

- `results/albums/<set>/album` names the album job (written by whoever created it);
- `results/albums/<set>/member-<index>` names each photo's job, written when the photo ARRIVES
  (the webhook): the set waits for every photo that arrived, and for the missing ones only until
  the timeout;
- `results/albums/<set>/decided.json` lists the photos the summary covers, written once, under
  the set's lock. A photo that ends after that (it arrived late) is answered on its own.

The lock is a lease row in the job table (`claim`/`release`, atomic on SQLite and PostgreSQL), so
two workers finishing the last two photos at once cannot both decide, nor decide without one.
Files sit under results/ so the sweeper removes them with the results.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from storage.files import BlobNotFound, BlobStore
from storage.jobs import Job, JobStatus, JobStore

PREFIX = "results/albums"
ALBUM_KIND = "album"
MEMBER_KIND = "album_photo"  # not counted by the rate limit: the album job counts once for all
MAX_SET = 100  # LINE sends a few dozen at most; a bigger "total" is not trusted
LOCK_LEASE_S = 30.0  # the locked part reads a few jobs and writes one file
DONE = (JobStatus.FINISHED, JobStatus.FAILED)


def set_key(channel: str, user_id: str, set_id: str) -> str:
    """A short, path-safe name for one user's set (the platform's set id is scoped to the user)."""
    digest = hashlib.sha256(f"{channel}\0{user_id}\0{set_id}".encode()).hexdigest()[:32]
    return f"{channel}-{digest}"


class AlbumLockTimeout(RuntimeError):
    """The set's lock stayed taken past its lease: its holder is stuck."""


@dataclass
class AlbumBook:
    jobs: JobStore
    blobs: BlobStore

    def _key(self, key: str, name: str) -> str:
        return f"{PREFIX}/{key}/{name}"

    # --- who belongs ------------------------------------------------------------------------------
    def note_album(self, key: str, album_job_id: str) -> None:
        self.blobs.put(self._key(key, "album"), album_job_id.encode())

    def album_job(self, key: str) -> Job | None:
        try:
            return self.jobs.get(self.blobs.get(self._key(key, "album")).decode())
        except BlobNotFound:
            return None

    def note_member(self, key: str, index: int, job_id: str) -> None:
        self.blobs.put(self._key(key, f"member-{index:03d}"), job_id.encode())

    def member_id(self, key: str, index: int) -> str | None:
        try:
            return self.blobs.get(self._key(key, f"member-{index:03d}")).decode()
        except BlobNotFound:
            return None

    def members(self, key: str, total: int) -> dict[int, Job]:
        """The photos that arrived so far: index -> job."""
        found: dict[int, Job] = {}
        for index in range(1, min(total, MAX_SET) + 1):
            try:
                job = self.jobs.get(self.blobs.get(self._key(key, f"member-{index:03d}")).decode())
            except BlobNotFound:
                continue
            if job is not None:
                found[index] = job
        return found

    # --- the decision -------------------------------------------------------------------------------
    def decided(self, key: str) -> list[int] | None:
        """The photos the summary covers (None while it is undecided)."""
        try:
            return json.loads(self.blobs.get(self._key(key, "decided.json")))
        except BlobNotFound:
            return None

    def decide(self, key: str, included: list[int]) -> None:
        self.blobs.put(self._key(key, "decided.json"), json.dumps(sorted(included)).encode())

    def ready(self, key: str, total: int, started_at: float, wait_s: float, now: float | None = None
              ) -> list[int] | None:
        """Call under the lock. The photos to summarise once the set is complete: every photo
        arrived and ended, or the wait is over and every photo that did arrive has ended; else None.
        Past three times the wait, whatever has ended is summarised (a photo stuck that long is
        answered on its own when it ends)."""
        now = time.time() if now is None else now
        members = self.members(key, total)
        ended = [index for index, job in members.items() if job.status in DONE]
        waited = now - started_at
        if len(ended) == len(members) and (len(members) >= min(total, MAX_SET) or waited >= wait_s):
            return ended
        if waited >= 3 * wait_s:
            return ended
        return None

    @contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """The set's lock, across threads and processes (a lease row named after the set)."""
        name, owner = f"album-lock:{key}", uuid.uuid4().hex
        deadline = time.monotonic() + LOCK_LEASE_S + 5
        while not self.jobs.claim(name, owner, LOCK_LEASE_S):
            if time.monotonic() > deadline:
                raise AlbumLockTimeout(key)
            time.sleep(0.02)
        try:
            yield
        finally:
            self.jobs.release(name, owner)
