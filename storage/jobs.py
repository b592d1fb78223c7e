"""The job table (SQLite): one row per unit of work, deduplicated per platform event.

States read like rq's: queued -> started -> finished | failed. Jobs found `queued` or `started`
at boot were accepted but never finished; `resumable()` hands them back to the worker so nothing
a user sent is silently lost. Each thread opens its own connection (SQLite objects are per-thread).

`JobStore` is the interface every backend implements: `SqliteJobStore` here (the embedded
default), `storage.jobs_postgres.PostgresJobStore` for a fleet; `storage.open.open_job_store`
picks one from the configuration. Leases (`claim` / `renew` / `release` / `abandoned`) matter
only when separate worker processes take jobs from a broker (dispatch/): they make a redelivered
job run once, and let the sweep find jobs whose worker vanished.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol


# Rows deleted per transaction by purge_ended (a webhook's write waits at most one batch).
PURGE_BATCH = 2000


class JobStatus(str, Enum):
    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass
class Job:
    id: str
    kind: str  # "cutout" | "composite"
    channel: str  # "line" | "messenger" | "web" | "api" | "cli"
    user_id: str
    payload: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    dedupe_key: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0


SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    dedupe_key TEXT UNIQUE,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (channel, user_id, created_at);
CREATE TABLE IF NOT EXISTS users (
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL,
    PRIMARY KEY (channel, user_id)
);
CREATE TABLE IF NOT EXISTS seen_events (
    dedupe_key TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_leases (
    job_id TEXT PRIMARY KEY,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL DEFAULT 0
);
"""


# A change to a job's result: given the stored result, the result to store, or None to leave it.
# It runs inside the store's transaction (other writers of that job wait), so it must be quick: no
# files, no network. An exception it raises rolls the transaction back and reaches the caller.
ResultChange = Callable[[dict[str, Any]], dict[str, Any] | None]


class DuplicateJob(Exception):
    """A job with this dedupe key exists already (a platform redelivery)."""


class JobStore(Protocol):
    """What the conversation, the campaigns and the dispatchers need from a job table."""

    def create(self, kind: str, channel: str, user_id: str, payload: dict[str, Any],
               dedupe_key: str | None = None, now: float | None = None) -> Job: ...
    def get(self, job_id: str) -> Job | None: ...
    def mark_started(self, job_id: str) -> None: ...
    def mark_finished(self, job_id: str, result: dict[str, Any]) -> None: ...
    def mark_failed(self, job_id: str, error: str, result: dict[str, Any] | None = None) -> None: ...
    def update_result(self, job_id: str, result: dict[str, Any]) -> None: ...
    def change_result(self, job_id: str, change: ResultChange) -> dict[str, Any] | None: ...
    def resumable(self) -> list[Job]: ...
    def count_recent(self, channel: str, user_id: str, since: float, kind: str = "photo") -> int: ...
    def find(self, dedupe_key: str) -> Job | None: ...
    def recent(self, channel: str, user_id: str, kind: str, since: float) -> list[Job]: ...
    def counts_by_status(self) -> dict[str, int]: ...
    def first_sighting(self, dedupe_key: str) -> bool: ...
    def user_state(self, channel: str, user_id: str) -> dict[str, Any]: ...
    def update_user_state(self, channel: str, user_id: str, **changes: Any) -> dict[str, Any]: ...
    # leases, for separate worker processes
    def mark_enqueued(self, job_id: str, now: float | None = None) -> None: ...
    def claim(self, job_id: str, owner: str, lease_s: float, now: float | None = None) -> bool: ...
    def renew(self, job_id: str, owner: str, lease_s: float, now: float | None = None) -> bool: ...
    def release(self, job_id: str, owner: str) -> None: ...
    def lease_holder(self, job_id: str) -> tuple[str, float] | None: ...
    def abandoned(self, requeue_after_s: float, now: float | None = None) -> list[str]: ...
    # retention
    def purge_ended(self, older_than_s: float, now: float | None = None, batch: int = ...) -> int: ...


class SqliteJobStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, for stores that share the database file (campaigns)."""
        return self._connect()

    # --- jobs -----------------------------------------------------------------------------
    def create(
        self,
        kind: str,
        channel: str,
        user_id: str,
        payload: dict[str, Any],
        dedupe_key: str | None = None,
        now: float | None = None,
    ) -> Job:
        """Insert a queued job; raise DuplicateJob when `dedupe_key` was seen before."""
        job = Job(
            id=uuid.uuid4().hex,
            kind=kind,
            channel=channel,
            user_id=user_id,
            payload=payload,
            dedupe_key=dedupe_key,
            created_at=now or time.time(),
        )
        try:
            self._connect().execute(
                "INSERT INTO jobs (id, dedupe_key, kind, channel, user_id, payload, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, dedupe_key, kind, channel, user_id, json.dumps(payload), job.status.value,
                 job.created_at),
            )
        except sqlite3.IntegrityError:
            raise DuplicateJob(dedupe_key) from None
        return job

    def get(self, job_id: str) -> Job | None:
        row = self._connect().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def mark_started(self, job_id: str) -> None:
        self._connect().execute(
            "UPDATE jobs SET status = ?, started_at = ?, attempts = attempts + 1 WHERE id = ?",
            (JobStatus.STARTED.value, time.time(), job_id),
        )

    def mark_finished(self, job_id: str, result: dict[str, Any]) -> None:
        self._connect().execute(
            "UPDATE jobs SET status = ?, result = ?, ended_at = ?, error = NULL WHERE id = ?",
            (JobStatus.FINISHED.value, json.dumps(result), time.time(), job_id),
        )

    def mark_failed(self, job_id: str, error: str, result: dict[str, Any] | None = None) -> None:
        self._connect().execute(
            "UPDATE jobs SET status = ?, error = ?, result = ?, ended_at = ? WHERE id = ?",
            (JobStatus.FAILED.value, error, json.dumps(result or {}), time.time(), job_id),
        )

    def update_result(self, job_id: str, result: dict[str, Any]) -> None:
        self._connect().execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id))

    def change_result(self, job_id: str, change: ResultChange) -> dict[str, Any] | None:
        """Read, change and write a job's result as one transaction (see ResultChange); the result
        written, or None when `change` left it as it was (or there is no such job)."""
        with self._write() as db:
            row = db.execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            changed = change(json.loads(row["result"] or "{}"))
            if changed is not None:
                db.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(changed), job_id))
            return changed

    def resumable(self) -> list[Job]:
        """Jobs accepted but not finished (queued, or started when the process died), oldest first."""
        rows = self._connect().execute(
            "SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY created_at",
            (JobStatus.QUEUED.value, JobStatus.STARTED.value),
        ).fetchall()
        return [_row_to_job(row) for row in rows]

    def count_recent(self, channel: str, user_id: str, since: float, kind: str = "photo") -> int:
        row = self._connect().execute(
            "SELECT COUNT(*) FROM jobs WHERE channel = ? AND user_id = ? AND kind = ? AND created_at >= ?",
            (channel, user_id, kind, since),
        ).fetchone()
        return int(row[0])

    def find(self, dedupe_key: str) -> Job | None:
        """The job created with this dedupe key, if any."""
        row = self._connect().execute("SELECT * FROM jobs WHERE dedupe_key = ?", (dedupe_key,)).fetchone()
        return _row_to_job(row) if row else None

    def recent(self, channel: str, user_id: str, kind: str, since: float) -> list[Job]:
        """One user's jobs of one kind created at or after `since`, oldest first."""
        rows = self._connect().execute(
            "SELECT * FROM jobs WHERE channel = ? AND user_id = ? AND kind = ? AND created_at >= ?"
            " ORDER BY created_at, id", (channel, user_id, kind, since)).fetchall()
        return [_row_to_job(row) for row in rows]

    def counts_by_status(self) -> dict[str, int]:
        rows = self._connect().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def purge_ended(self, older_than_s: float, now: float | None = None, batch: int = PURGE_BATCH) -> int:
        """Delete finished and failed jobs created (and ended) more than `older_than_s` ago, their
        leases, and the events seen before then; -> the number of jobs deleted. Unfinished jobs stay.
        In transactions of `batch` rows: SQLite has one writer, and a webhook waits for it."""
        cutoff = (now or time.time()) - older_than_s
        ended = ("SELECT id FROM jobs WHERE status IN (?, ?) AND created_at < ? AND COALESCE(ended_at, 0) < ?"
                 " LIMIT ?", (JobStatus.FINISHED.value, JobStatus.FAILED.value, cutoff, cutoff, batch))
        deleted = 0
        while True:
            with self._write() as db:
                ids = [row[0] for row in db.execute(*ended).fetchall()]
                marks = ", ".join("?" * len(ids))
                if ids:
                    db.execute(f"DELETE FROM job_leases WHERE job_id IN ({marks})", ids)
                    db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
            deleted += len(ids)
            if len(ids) < batch:
                break
        while True:
            with self._write() as db:
                gone = db.execute("DELETE FROM seen_events WHERE rowid IN (SELECT rowid FROM seen_events"
                                  " WHERE seen_at < ? LIMIT ?)", (cutoff, batch)).rowcount
            if gone < batch:
                return deleted

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this thread's connection, rolled back on any error."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- events seen (dedupe for events that create no job, e.g. a text command) ----------
    def first_sighting(self, dedupe_key: str) -> bool:
        """Record an event id; True the first time, False on every redelivery."""
        try:
            self._connect().execute(
                "INSERT INTO seen_events (dedupe_key, seen_at) VALUES (?, ?)", (dedupe_key, time.time())
            )
            return True
        except sqlite3.IntegrityError:
            return False

    # --- leases (separate worker processes; unused by the in-process pipeline) -------------
    def mark_enqueued(self, job_id: str, now: float | None = None) -> None:
        """Note that a job was handed to the broker now (the sweep re-sends it only much later);
        a lease that ran out (its worker vanished) is dropped, so the job counts as waiting again."""
        self._connect().execute(
            "INSERT INTO job_leases (job_id, enqueued_at) VALUES (?, ?)"
            " ON CONFLICT (job_id) DO UPDATE SET enqueued_at = excluded.enqueued_at,"
            " owner = CASE WHEN job_leases.lease_until < excluded.enqueued_at THEN NULL ELSE job_leases.owner END",
            (job_id, now or time.time()),
        )

    def claim(self, job_id: str, owner: str, lease_s: float, now: float | None = None) -> bool:
        """Take the job for `lease_s` seconds unless another owner holds a live lease."""
        now = now or time.time()
        cursor = self._connect().execute(
            "INSERT INTO job_leases (job_id, owner, lease_until) VALUES (?, ?, ?)"
            " ON CONFLICT (job_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until"
            " WHERE job_leases.owner IS NULL OR job_leases.owner = excluded.owner"
            " OR job_leases.lease_until < ?",
            (job_id, owner, now + lease_s, now),
        )
        return cursor.rowcount == 1

    def renew(self, job_id: str, owner: str, lease_s: float, now: float | None = None) -> bool:
        cursor = self._connect().execute(
            "UPDATE job_leases SET lease_until = ? WHERE job_id = ? AND owner = ?",
            ((now or time.time()) + lease_s, job_id, owner),
        )
        return cursor.rowcount == 1

    def release(self, job_id: str, owner: str) -> None:
        self._connect().execute(
            "UPDATE job_leases SET owner = NULL, lease_until = 0 WHERE job_id = ? AND owner = ?", (job_id, owner)
        )

    def lease_holder(self, job_id: str) -> tuple[str, float] | None:
        """(owner, lease_until) of the job's lease, live or run out; None when nobody holds it."""
        row = self._connect().execute("SELECT owner, lease_until FROM job_leases WHERE job_id = ? AND owner IS NOT NULL",
                                      (job_id,)).fetchone()
        return (row["owner"], float(row["lease_until"])) if row else None

    def abandoned(self, requeue_after_s: float, now: float | None = None) -> list[str]:
        """Unfinished jobs nobody is working on: a lease that ran out (its worker vanished), or
        no live lease and not handed to the broker for `requeue_after_s` (the message was lost)."""
        now = now or time.time()
        rows = self._connect().execute(
            "SELECT jobs.id FROM jobs LEFT JOIN job_leases ON job_leases.job_id = jobs.id"
            " WHERE jobs.status IN (?, ?) AND ("
            " (job_leases.owner IS NOT NULL AND job_leases.lease_until < ?)"
            " OR (job_leases.owner IS NULL AND COALESCE(job_leases.enqueued_at, jobs.created_at) < ?))"
            " ORDER BY jobs.created_at",
            (JobStatus.QUEUED.value, JobStatus.STARTED.value, now, now - requeue_after_s),
        ).fetchall()
        return [row[0] for row in rows]

    # --- per-user conversation state ------------------------------------------------------
    def user_state(self, channel: str, user_id: str) -> dict[str, Any]:
        row = self._connect().execute(
            "SELECT state FROM users WHERE channel = ? AND user_id = ?", (channel, user_id)
        ).fetchone()
        return json.loads(row[0]) if row else {}

    def update_user_state(self, channel: str, user_id: str, **changes: Any) -> dict[str, Any]:
        with self._write() as db:
            row = db.execute(
                "SELECT state FROM users WHERE channel = ? AND user_id = ?", (channel, user_id)
            ).fetchone()
            state = json.loads(row[0]) if row else {}
            state.update(changes)
            db.execute(
                "INSERT INTO users (channel, user_id, state, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (channel, user_id) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                (channel, user_id, json.dumps(state), time.time()),
            )
        return state


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        channel=row["channel"],
        user_id=row["user_id"],
        payload=json.loads(row["payload"]),
        status=JobStatus(row["status"]),
        dedupe_key=row["dedupe_key"],
        result=json.loads(row["result"] or "{}"),
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        attempts=row["attempts"],
    )
