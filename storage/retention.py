"""How long job rows and seen events are kept: as long as the results they point to, plus a day.

A job row is what a chat card's buttons, an editor link and a redelivered webhook are answered
from. Its files expire after Settings.result_ttl_s (the blob sweepers delete them), and with them
every link and button it gave out. Past that, plus a day's grace for a late sweep, the row can
answer nothing a user may still send (a button of that age says it has expired, as for a result
whose files are gone), so finished and failed rows go, with the events seen before then: platforms
redeliver a webhook within hours, not weeks. Unfinished jobs are never purged (resume and the
fleet's sweep still own them). Without this the job table grew by every photo ever sent.
"""
from __future__ import annotations

import logging

from settings import Settings
from storage.files import BlobStore
from storage.jobs import JobStore

log = logging.getLogger(__name__)

# Kept this long past the results' own expiry.
RETENTION_GRACE_S = 24 * 3600


def expire(blobs: BlobStore, jobs: JobStore, settings: Settings) -> int:
    """The hourly sweep (the embedded server's sweeper thread, the fleet's `cutout.expire_results`):
    expired results' files, then the job rows and seen events that outlived them; -> files removed."""
    removed = blobs.sweep("results", settings.result_ttl_s) + blobs.sweep("inputs", settings.result_ttl_s)
    if removed:
        log.info("sweeper removed %d expired files", removed)
    purge_expired_jobs(jobs, settings)
    return removed


def purge_expired_jobs(jobs: JobStore, settings: Settings) -> int:
    """Delete the job rows (and seen events) older than the results' lifetime plus the grace."""
    deleted = jobs.purge_ended(settings.result_ttl_s + RETENTION_GRACE_S)
    if deleted:
        log.info("sweeper removed %d job rows older than their results", deleted)
    return deleted
