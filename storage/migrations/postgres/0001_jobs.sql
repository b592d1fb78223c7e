-- The job table, as storage/jobs.py's SQLite SCHEMA: one row per unit of work.
-- dedupe_key is '<channel>:<platform event id>': its unique index is the (channel, event_id)
-- constraint that drops platform redeliveries (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    dedupe_key TEXT UNIQUE,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    ended_at DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_status ON jobs (status, created_at);
CREATE INDEX jobs_user ON jobs (channel, user_id, created_at);

CREATE TABLE users (
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '{}',
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel, user_id)
);

CREATE TABLE seen_events (
    dedupe_key TEXT PRIMARY KEY,
    seen_at DOUBLE PRECISION NOT NULL
);

-- Who works on a job and until when (separate worker processes; see dispatch/).
CREATE TABLE job_leases (
    job_id TEXT PRIMARY KEY,
    owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    enqueued_at DOUBLE PRECISION NOT NULL DEFAULT 0
);
