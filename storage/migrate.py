"""Plain versioned SQL migrations for PostgreSQL: storage/migrations/postgres/NNNN_name.sql.

Each file runs once, in its own transaction, in name order; `schema_migrations` records which ran.
A transaction-scoped advisory lock lets several processes start at once: the first applies, the
others wait and then find nothing left to do.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "postgres"
LOCK_ID = 0x6375746F7574  # "cutout": any constant shared by every process of the service


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    files = sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [(int(path.name[:4]), path) for path in files]


def migrate(connection, folder: Path = MIGRATIONS) -> list[int]:
    """Apply the migrations this database lacks; return the versions applied now."""
    applied_now: list[int] = []
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        connection.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                           " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
        done = {row[0] for row in connection.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, path in migration_files(folder):
            if version in done:
                continue
            log.info("applying migration %s", path.name)
            connection.execute(path.read_text())
            connection.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                               (version, path.name, time.time()))
            applied_now.append(version)
    return applied_now
