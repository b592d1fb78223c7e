"""The job table on PostgreSQL: the same rows and semantics as storage/jobs.SqliteJobStore.

For a fleet: every web and worker process shares one database. The schema comes from the
versioned migrations (storage/migrate.py), applied when a store opens. Each thread keeps its own
autocommit connection (psycopg 3); a connection the server dropped is reopened once per call.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import psycopg

from storage.jobs import PURGE_BATCH, DuplicateJob, Job, JobStatus, ResultChange
from storage.migrate import migrate

log = logging.getLogger(__name__)


class SqliteDialectConnection:
    """Runs the SQLite-flavoured statements of bot/campaigns.py on PostgreSQL.

    Those use `?` placeholders and `INSERT OR IGNORE`; both have exact PostgreSQL equivalents
    (`%s`, `ON CONFLICT DO NOTHING`). Statements of this module are written for PostgreSQL.
    """

    def __init__(self, connection: psycopg.Connection) -> None:
        self._connection = connection

    @staticmethod
    def translate(sql: str) -> str:
        sql = sql.replace("%", "%%").replace("?", "%s")
        if sql.lstrip().upper().startswith("INSERT OR IGNORE"):
            sql = sql.replace("INSERT OR IGNORE", "INSERT", 1) + " ON CONFLICT DO NOTHING"
        return sql

    def execute(self, sql: str, params: tuple = ()) -> psycopg.Cursor:
        return self._connection.execute(self.translate(sql), params)

    def executescript(self, script: str) -> None:
        self._connection.execute(script.replace(" REAL", " DOUBLE PRECISION"))


class PostgresJobStore:
    def __init__(self, url: str, apply_migrations: bool = True) -> None:
        self.url = url
        self._local = threading.local()
        if apply_migrations:
            applied = migrate(self._connect())
            if applied:
                log.info("job store migrated to version %d", applied[-1])

    def _connect(self) -> psycopg.Connection:
        connection = getattr(self._local, "db", None)
        if connection is None or connection.closed:
            connection = psycopg.connect(self.url, autocommit=True)
            self._local.db = connection
        return connection

    def _execute(self, sql: str, params: tuple = ()) -> psycopg.Cursor:
        """One statement; a connection lost since the last call (server restart) is reopened once."""
        try:
            return self._connect().execute(sql, params)
        except psycopg.OperationalError:
            connection = getattr(self._local, "db", None)
            if connection is not None and not connection.closed:
                raise  # the server answered: not a lost connection
            self._local.db = None
            return self._connect().execute(sql, params)

    def connection(self) -> SqliteDialectConnection:
        """This thread's connection, for stores that share the database (campaigns)."""
        return SqliteDialectConnection(self._connect())

    # --- jobs -----------------------------------------------------------------------------
    def create(self, kind: str, channel: str, user_id: str, payload: dict[str, Any],
               dedupe_key: str | None = None, now: float | None = None) -> Job:
        """Insert a queued job; raise DuplicateJob when `dedupe_key` was seen before."""
        job = Job(id=uuid.uuid4().hex, kind=kind, channel=channel, user_id=user_id, payload=payload,
                  dedupe_key=dedupe_key, created_at=now or time.time())
        row = self._execute(
            "INSERT INTO jobs (id, dedupe_key, kind, channel, user_id, payload, status, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            (job.id, dedupe_key, kind, channel, user_id, json.dumps(payload), job.status.value, job.created_at),
        ).fetchone()
        if row is None:
            raise DuplicateJob(dedupe_key)
        return job

    def get(self, job_id: str) -> Job | None:
        cursor = self._execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
        row = cursor.fetchone()
        return _row_to_job(row) if row else None

    def mark_started(self, job_id: str) -> None:
        self._execute("UPDATE jobs SET status = %s, started_at = %s, attempts = attempts + 1 WHERE id = %s",
                      (JobStatus.STARTED.value, time.time(), job_id))

    def mark_finished(self, job_id: str, result: dict[str, Any]) -> None:
        self._execute("UPDATE jobs SET status = %s, result = %s, ended_at = %s, error = NULL WHERE id = %s",
                      (JobStatus.FINISHED.value, json.dumps(result), time.time(), job_id))

    def mark_failed(self, job_id: str, error: str, result: dict[str, Any] | None = None) -> None:
        self._execute("UPDATE jobs SET status = %s, error = %s, result = %s, ended_at = %s WHERE id = %s",
                      (JobStatus.FAILED.value, error, json.dumps(result or {}), time.time(), job_id))

    def update_result(self, job_id: str, result: dict[str, Any]) -> None:
        self._execute("UPDATE jobs SET result = %s WHERE id = %s", (json.dumps(result), job_id))

    def change_result(self, job_id: str, change: ResultChange) -> dict[str, Any] | None:
        """Read, change and write a job's result with its row locked (storage.jobs.ResultChange)."""
        connection = self._connect()
        with connection.transaction():
            row = connection.execute("SELECT result FROM jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
            if row is None:
                return None
            changed = change(json.loads(row[0] or "{}"))
            if changed is not None:
                connection.execute("UPDATE jobs SET result = %s WHERE id = %s", (json.dumps(changed), job_id))
            return changed

    def resumable(self) -> list[Job]:
        """Jobs accepted but not finished (queued, or started when the process died), oldest first."""
        rows = self._execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE status IN (%s, %s) ORDER BY created_at",
                             (JobStatus.QUEUED.value, JobStatus.STARTED.value)).fetchall()
        return [_row_to_job(row) for row in rows]

    def count_recent(self, channel: str, user_id: str, since: float, kind: str = "photo") -> int:
        row = self._execute(
            "SELECT COUNT(*) FROM jobs WHERE channel = %s AND user_id = %s AND kind = %s AND created_at >= %s",
            (channel, user_id, kind, since)).fetchone()
        return int(row[0])

    def find(self, dedupe_key: str) -> Job | None:
        """The job created with this dedupe key, if any."""
        row = self._execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE dedupe_key = %s", (dedupe_key,)).fetchone()
        return _row_to_job(row) if row else None

    def recent(self, channel: str, user_id: str, kind: str, since: float) -> list[Job]:
        """One user's jobs of one kind created at or after `since`, oldest first."""
        rows = self._execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE channel = %s AND user_id = %s AND kind = %s"
            " AND created_at >= %s ORDER BY created_at, id", (channel, user_id, kind, since)).fetchall()
        return [_row_to_job(row) for row in rows]

    def counts_by_status(self) -> dict[str, int]:
        rows = self._execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def purge_ended(self, older_than_s: float, now: float | None = None, batch: int = PURGE_BATCH) -> int:
        """storage.jobs.SqliteJobStore.purge_ended: finished and failed jobs older than `older_than_s`,
        their leases and the events seen before then are deleted, `batch` rows a transaction;
        -> the number of jobs deleted."""
        cutoff = (now or time.time()) - older_than_s
        ended = ("SELECT id FROM jobs WHERE status IN (%s, %s) AND created_at < %s AND COALESCE(ended_at, 0) < %s"
                 " LIMIT %s")
        params = (JobStatus.FINISHED.value, JobStatus.FAILED.value, cutoff, cutoff, batch)
        connection, deleted = self._connect(), 0
        while True:
            with connection.transaction():
                ids = [row[0] for row in connection.execute(ended + " FOR UPDATE SKIP LOCKED", params).fetchall()]
                if ids:
                    connection.execute("DELETE FROM job_leases WHERE job_id = ANY(%s)", (ids,))
                    connection.execute("DELETE FROM jobs WHERE id = ANY(%s)", (ids,))
            deleted += len(ids)
            if len(ids) < batch:
                break
        while True:
            gone = connection.execute("DELETE FROM seen_events WHERE dedupe_key IN (SELECT dedupe_key FROM seen_events"
                                      " WHERE seen_at < %s LIMIT %s)", (cutoff, batch)).rowcount
            if gone < batch:
                return deleted

    # --- events seen ----------------------------------------------------------------------
    def first_sighting(self, dedupe_key: str) -> bool:
        """Record an event id; True the first time, False on every redelivery."""
        row = self._execute("INSERT INTO seen_events (dedupe_key, seen_at) VALUES (%s, %s)"
                            " ON CONFLICT DO NOTHING RETURNING dedupe_key", (dedupe_key, time.time())).fetchone()
        return row is not None

    # --- leases (separate worker processes) -------------------------------------------------
    def mark_enqueued(self, job_id: str, now: float | None = None) -> None:
        """Note that a job was handed to the broker now; a lease that ran out is dropped."""
        self._execute("INSERT INTO job_leases (job_id, enqueued_at) VALUES (%s, %s)"
                      " ON CONFLICT (job_id) DO UPDATE SET enqueued_at = excluded.enqueued_at, owner = CASE"
                      " WHEN job_leases.lease_until < excluded.enqueued_at THEN NULL ELSE job_leases.owner END",
                      (job_id, now or time.time()))

    def claim(self, job_id: str, owner: str, lease_s: float, now: float | None = None) -> bool:
        """Take the job for `lease_s` seconds unless another owner holds a live lease (atomic)."""
        now = now or time.time()
        row = self._execute(
            "INSERT INTO job_leases (job_id, owner, lease_until) VALUES (%s, %s, %s)"
            " ON CONFLICT (job_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until"
            " WHERE job_leases.owner IS NULL OR job_leases.owner = excluded.owner OR job_leases.lease_until < %s"
            " RETURNING job_id", (job_id, owner, now + lease_s, now)).fetchone()
        return row is not None

    def renew(self, job_id: str, owner: str, lease_s: float, now: float | None = None) -> bool:
        cursor = self._execute("UPDATE job_leases SET lease_until = %s WHERE job_id = %s AND owner = %s",
                               ((now or time.time()) + lease_s, job_id, owner))
        return cursor.rowcount == 1

    def release(self, job_id: str, owner: str) -> None:
        self._execute("UPDATE job_leases SET owner = NULL, lease_until = 0 WHERE job_id = %s AND owner = %s",
                      (job_id, owner))

    def lease_holder(self, job_id: str) -> tuple[str, float] | None:
        """(owner, lease_until) of the job's lease, live or run out; None when nobody holds it."""
        row = self._execute("SELECT owner, lease_until FROM job_leases WHERE job_id = %s AND owner IS NOT NULL",
                            (job_id,)).fetchone()
        return (row[0], float(row[1])) if row else None

    def abandoned(self, requeue_after_s: float, now: float | None = None) -> list[str]:
        """Unfinished jobs nobody works on: a lease that ran out, or a message lost for `requeue_after_s`."""
        now = now or time.time()
        rows = self._execute(
            "SELECT jobs.id FROM jobs LEFT JOIN job_leases ON job_leases.job_id = jobs.id"
            " WHERE jobs.status IN (%s, %s) AND ("
            " (job_leases.owner IS NOT NULL AND job_leases.lease_until < %s)"
            " OR (job_leases.owner IS NULL AND COALESCE(job_leases.enqueued_at, jobs.created_at) < %s))"
            " ORDER BY jobs.created_at",
            (JobStatus.QUEUED.value, JobStatus.STARTED.value, now, now - requeue_after_s)).fetchall()
        return [row[0] for row in rows]

    # --- per-user conversation state ------------------------------------------------------
    def user_state(self, channel: str, user_id: str) -> dict[str, Any]:
        row = self._execute("SELECT state FROM users WHERE channel = %s AND user_id = %s",
                            (channel, user_id)).fetchone()
        return json.loads(row[0]) if row else {}

    def update_user_state(self, channel: str, user_id: str, **changes: Any) -> dict[str, Any]:
        connection = self._connect()
        with connection.transaction():
            # Create the row if needed, then lock it: concurrent updates merge instead of losing one.
            connection.execute("INSERT INTO users (channel, user_id, state, updated_at) VALUES (%s, %s, '{}', %s)"
                               " ON CONFLICT DO NOTHING", (channel, user_id, time.time()))
            row = connection.execute("SELECT state FROM users WHERE channel = %s AND user_id = %s FOR UPDATE",
                                     (channel, user_id)).fetchone()
            state = json.loads(row[0])
            state.update(changes)
            connection.execute("UPDATE users SET state = %s, updated_at = %s WHERE channel = %s AND user_id = %s",
                               (json.dumps(state), time.time(), channel, user_id))
        return state


JOB_COLUMNS = ("id, kind, channel, user_id, payload, status, dedupe_key, result, error, created_at, started_at,"
               " ended_at, attempts")


def _row_to_job(row: tuple) -> Job:
    (job_id, kind, channel, user_id, payload, status, dedupe_key, result, error, created_at, started_at,
     ended_at, attempts) = row
    return Job(id=job_id, kind=kind, channel=channel, user_id=user_id, payload=json.loads(payload),
               status=JobStatus(status), dedupe_key=dedupe_key, result=json.loads(result or "{}"), error=error,
               created_at=created_at, started_at=started_at, ended_at=ended_at, attempts=attempts)
