"""Photo sets (a LINE imageSet, one Messenger message with several photos): who belongs, when to answer.

Every photo of a set is still its own job (deduplicated on its own event id, cut out on its own);
one more job, kind "album", answers the whole set with one summary. The set's bookkeeping lives in
the shared stores, so it holds across threads, processes and restarts:

- the album job is found by its dedupe key (`album_dedupe_key`): whichever photo arrives first
  creates it, the others' inserts are refused;
- the set's photos are the job rows themselves (kind "album_photo", the set's id and index in
  their payload): a photo belongs from the moment the webhook recorded it, so the set waits for
  every photo that ARRIVED, and for the missing ones only until the timeout. The webhook writes
  nothing else for a set (no file per photo);
- `results/albums/<set>/decided.json` lists the photos the summary covers, written once, under
  the set's lock. A photo that ends after that (it arrived late) is answered on its own.

The lock is a lease row in the job table (`claim`/`release`, atomic on SQLite and PostgreSQL), so
two workers finishing the last two photos at once cannot both decide, nor decide without one.
The decision file sits under results/ so the sweeper removes it with the results.
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
# A set's photos are looked for among the user's photos from this long before its album job was
# made: they arrive within seconds of each other, and the first one makes the album job.
MEMBER_WINDOW_S = 3600.0


def album_dedupe_key(channel: str, key: str) -> str:
    """The album job's dedupe key: one album job per set, whichever photo arrives first."""
    return f"{channel}:album:{key}"


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
    def album_job(self, channel: str, key: str) -> Job | None:
        return self.jobs.find(album_dedupe_key(channel, key))

    def members(self, album: Job, total: int) -> dict[int, Job]:
        """The photos of `album`'s set that arrived so far: index -> job (the first one per index)."""
        key = album.payload["set_key"]
        found: dict[int, Job] = {}
        for job in self.jobs.recent(album.channel, album.user_id, MEMBER_KIND, album.created_at - MEMBER_WINDOW_S):
            index = int(job.payload.get("set_index") or 0)
            if not 1 <= index <= min(total, MAX_SET) or index in found:
                continue
            if set_key(job.channel, job.user_id, job.payload.get("set_id", "")) == key:
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

    def ready(self, album: Job, total: int, wait_s: float, now: float | None = None) -> list[int] | None:
        """Call under the lock. The photos to summarise once the set is complete: every photo
        arrived and ended, or the wait (from the album job's creation) is over and every photo that
        did arrive has ended; else None. Past three times the wait, whatever has ended is summarised
        (a photo stuck that long is answered on its own when it ends)."""
        now = time.time() if now is None else now
        members = self.members(album, total)
        ended = [index for index, job in members.items() if job.status in DONE]
        waited = now - album.created_at
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
