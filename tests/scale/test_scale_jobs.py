"""The job store seam: every job-store behaviour, on SQLite (embedded) and on a real PostgreSQL."""
from __future__ import annotations

import threading
import time

import pytest

from bot.campaigns import Campaign, CampaignStore
from storage.files import LocalBlobStore
from storage.jobs import DuplicateJob, JobStatus, SqliteJobStore
from storage.open import open_job_store
from tests.servers.fixtures import postgres_server, postgres_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request, tmp_path):
    """A function that opens the store afresh (a restart), on one database per test."""
    if request.param == "sqlite":
        return lambda: open_job_store("", tmp_path)
    url = request.getfixturevalue("postgres_url")
    return lambda: open_job_store(url, tmp_path)


def test_jobs_dedupe_resume_and_survive_reopening(open_store):
    jobs = open_store()
    first = jobs.create("photo", "line", "U1", {"a": 1}, dedupe_key="line:e1")
    with pytest.raises(DuplicateJob):
        jobs.create("photo", "line", "U1", {"a": 1}, dedupe_key="line:e1")
    jobs.create("photo", "messenger", "U1", {"a": 1}, dedupe_key="messenger:e1")  # another channel's e1
    second = jobs.create("text", "line", "U1", {}, dedupe_key="line:e2")
    jobs.mark_started(second.id)
    jobs.mark_finished(second.id, {"ok": True})

    reopened = open_store()  # a restart
    assert [job.id for job in reopened.resumable()][0] == first.id
    assert reopened.get(second.id).status is JobStatus.FINISHED and reopened.get(second.id).result == {"ok": True}
    assert reopened.get(second.id).attempts == 1 and reopened.get("nope") is None
    assert reopened.count_recent("line", "U1", time.time() - 60) == 1  # photos only
    assert reopened.counts_by_status() == {"queued": 2, "finished": 1}
    assert reopened.first_sighting("x") and not reopened.first_sighting("x")
    reopened.update_user_state("line", "U1", language="en")
    reopened.update_user_state("line", "U1", campaign="spring")
    assert open_store().user_state("line", "U1") == {"language": "en", "campaign": "spring"}
    reopened.mark_failed(first.id, "boom", {"input": "inputs/x"})
    failed = reopened.get(first.id)
    assert (failed.status, failed.error, failed.result) == (JobStatus.FAILED, "boom", {"input": "inputs/x"})


def test_jobs_are_found_by_dedupe_key_and_listed_per_user_and_kind(open_store):
    jobs = open_store()
    early = jobs.create("album_photo", "line", "U1", {"set_index": 1}, dedupe_key="line:p1", now=1000.0)
    late = jobs.create("album_photo", "line", "U1", {"set_index": 2}, dedupe_key="line:p2", now=1002.0)
    jobs.create("album_photo", "line", "U2", {}, dedupe_key="line:p3", now=1001.0)  # another user
    jobs.create("album_photo", "messenger", "U1", {}, dedupe_key="messenger:p1", now=1001.0)  # another channel
    jobs.create("photo", "line", "U1", {}, dedupe_key="line:p4", now=1001.0)  # another kind
    jobs.create("album_photo", "line", "U1", {}, dedupe_key="line:p0", now=900.0)  # before `since`
    album = jobs.create("album", "line", "U1", {"set_key": "k"}, dedupe_key="line:album:k")

    reopened = open_store()
    assert reopened.find("line:album:k").id == album.id and reopened.find("line:album:k").payload == {"set_key": "k"}
    assert reopened.find("line:album:nope") is None
    assert [job.id for job in reopened.recent("line", "U1", "album_photo", since=1000.0)] == [early.id, late.id]
    assert reopened.recent("line", "U1", "album_photo", since=1003.0) == []


def test_jobs_and_seen_events_outliving_their_results_are_purged_and_nothing_else(open_store):
    jobs = open_store()
    day, now = 86400.0, time.time()
    ended = jobs.create("photo", "line", "U1", {}, dedupe_key="line:ended")
    jobs.mark_enqueued(ended.id)  # a fleet's lease row
    jobs.mark_finished(ended.id, {"cutout": "results/a.png"})
    failed = jobs.create("photo", "line", "U1", {}, dedupe_key="line:failed")
    jobs.mark_failed(failed.id, "damaged")
    waiting = jobs.create("photo", "line", "U1", {}, dedupe_key="line:waiting")  # never finished
    later = jobs.create("photo", "line", "U2", {}, dedupe_key="line:later", now=now + 9 * day)
    jobs.mark_finished(later.id, {"cutout": "results/b.png"})
    assert jobs.first_sighting("line:text-event")

    assert jobs.purge_ended(8 * day) == 0 and jobs.get(ended.id) is not None  # nothing that old yet
    assert not jobs.first_sighting("line:text-event")
    assert jobs.purge_ended(8 * day, now=now + 10 * day, batch=1) == 2  # ten days on, a row a transaction

    reopened = open_store()
    assert reopened.get(ended.id) is None and reopened.get(failed.id) is None
    assert reopened.get(waiting.id).status is JobStatus.QUEUED  # resume still owns it
    assert reopened.get(later.id).status is JobStatus.FINISHED  # its results have not expired
    leases = reopened.connection().execute("SELECT COUNT(*) FROM job_leases WHERE job_id = ?", (ended.id,))
    assert leases.fetchone()[0] == 0
    assert reopened.first_sighting("line:text-event")  # forgotten with them


def test_the_hourly_sweep_purges_by_the_results_lifetime_plus_a_day(tmp_path):
    from settings import Settings
    from storage.retention import RETENTION_GRACE_S, expire

    jobs = SqliteJobStore(tmp_path / "jobs.db")
    settings = Settings(result_ttl_s=3600)
    now = time.time()
    kept = jobs.create("photo", "line", "U1", {}, now=now - 3600 - RETENTION_GRACE_S + 600)
    gone = jobs.create("photo", "line", "U1", {}, now=now - 3600 - RETENTION_GRACE_S - 600)
    for job in (kept, gone):
        jobs.mark_finished(job.id, {})
    jobs.connection().execute("UPDATE jobs SET ended_at = created_at")  # both ended when they were made
    expire(LocalBlobStore(tmp_path / "blobs"), jobs, settings)  # what the embedded server runs every hour
    assert jobs.get(gone.id) is None and jobs.get(kept.id) is not None


def test_a_redelivery_racing_on_many_threads_creates_one_job(open_store):
    jobs = open_store()
    created: list[str] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        store = open_store()  # like another process
        barrier.wait()
        try:
            created.append(store.create("photo", "line", "U9", {}, dedupe_key="line:race").id)
        except DuplicateJob:
            pass

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(created) == 1 and jobs.counts_by_status() == {"queued": 1}


def test_concurrent_user_state_updates_merge(open_store):
    jobs = open_store()

    def set_many(field: str) -> None:
        store = open_store()
        for index in range(20):
            store.update_user_state("line", "U2", **{field: index})

    threads = [threading.Thread(target=set_many, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert jobs.user_state("line", "U2") == {"a": 19, "b": 19, "c": 19}


def test_concurrent_result_changes_keep_every_change(open_store):
    """Read-change-write of one job's result from several processes at once (the editor's saves):
    none is lost, and a change that raises leaves the result as it was."""
    jobs = open_store()
    job = jobs.create("photo", "line", "U3", {})
    jobs.update_result(job.id, {"cutout": "results/x/cutout.png"})

    def append_many(name: str) -> None:
        store = open_store()
        for index in range(15):
            store.change_result(job.id, lambda result: {**result, "log": [*result.get("log", []), f"{name}{index}"]})

    threads = [threading.Thread(target=append_many, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    result = jobs.get(job.id).result
    assert sorted(result["log"]) == sorted(f"{name}{index}" for name in "abc" for index in range(15))
    assert [entry for entry in result["log"] if entry.startswith("a")] == [f"a{index}" for index in range(15)]

    def refuse(result):
        result["log"] = []
        raise ValueError("no")

    with pytest.raises(ValueError):
        jobs.change_result(job.id, refuse)
    assert len(jobs.get(job.id).result["log"]) == 45
    assert jobs.change_result(job.id, lambda result: None) is None  # left as it was
    assert jobs.change_result("no-such-job", lambda result: {"x": 1}) is None
    assert jobs.get(job.id).result["cutout"] == "results/x/cutout.png"


def test_leases_let_one_worker_hold_a_job_and_expose_abandoned_ones(open_store):
    jobs = open_store()
    now = time.time()
    job = jobs.create("photo", "line", "U3", {}, dedupe_key="line:lease", now=now - 5)
    jobs.mark_enqueued(job.id, now=now)
    assert jobs.abandoned(requeue_after_s=60, now=now) == []  # handed to the broker just now
    assert jobs.lease_holder(job.id) is None  # enqueued, nobody holds it
    assert jobs.claim(job.id, "worker-a", lease_s=30, now=now)
    assert jobs.lease_holder(job.id) == ("worker-a", now + 30)
    assert not jobs.claim(job.id, "worker-b", lease_s=30, now=now + 1)  # a redelivery while a is alive
    assert jobs.claim(job.id, "worker-a", lease_s=30, now=now + 1)  # its own redelivery
    assert jobs.renew(job.id, "worker-a", lease_s=30, now=now + 20)
    assert not jobs.renew(job.id, "worker-b", lease_s=30, now=now + 20)
    assert jobs.abandoned(requeue_after_s=600, now=now + 40) == []  # renewed until now + 50
    assert jobs.abandoned(requeue_after_s=600, now=now + 51) == [job.id]  # worker-a vanished
    jobs.mark_enqueued(job.id, now=now + 51)  # the sweep sends it again: waiting, not abandoned
    assert jobs.abandoned(requeue_after_s=600, now=now + 52) == []
    assert jobs.claim(job.id, "worker-b", lease_s=30, now=now + 51)
    jobs.release(job.id, "worker-b")
    assert jobs.lease_holder(job.id) is None and jobs.lease_holder("no-such-job") is None
    assert jobs.abandoned(requeue_after_s=600, now=now + 52) == []  # released, enqueued recently
    assert jobs.abandoned(requeue_after_s=600, now=now + 700) == [job.id]  # its message was lost
    jobs.mark_finished(job.id, {})
    assert jobs.abandoned(requeue_after_s=600, now=now + 700) == []
    never_enqueued = jobs.create("photo", "line", "U3", {}, dedupe_key="line:lost", now=now - 700)
    assert jobs.abandoned(requeue_after_s=600, now=now) == [never_enqueued.id]


def test_campaigns_share_the_job_database(open_store, tmp_path):
    """bot/campaigns.py keeps its tables beside the jobs; its SQL runs on both databases."""
    campaigns = CampaignStore(open_store(), LocalBlobStore(tmp_path / "blobs"))
    campaigns.save(Campaign(slug="spring", title="Spring", keywords=["spring"]))
    campaigns.join(campaigns.get("spring"), "line", "U4")
    campaigns.join(campaigns.get("spring"), "line", "U4")  # joining twice counts once
    campaigns.count("spring", "photos")
    campaigns.count("spring", "photos")
    again = CampaignStore(open_store(), LocalBlobStore(tmp_path / "blobs"))  # a restart
    assert again.match_keyword("Spring sale!").slug == "spring"
    assert again.counters("spring") == {"participants": 1, "photos": 2, "composites": 0}


def test_postgres_migrations_apply_once_and_record_versions(postgres_url, tmp_path):
    import psycopg

    from storage.migrate import migrate, migration_files

    stores = [None] * 4
    threads = [threading.Thread(target=lambda i=i: stores.__setitem__(i, open_job_store(postgres_url, tmp_path)))
               for i in range(4)]  # processes starting together
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(store is not None for store in stores)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [version for version, _ in migration_files()] and versions[:2] == [1, 2]
        assert migrate(connection) == []
        unique = connection.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'jobs'"
                                    " AND indexdef LIKE '%UNIQUE%dedupe_key%'").fetchall()
        assert len(unique) == 1


def test_sqlite_stays_the_default(tmp_path):
    assert isinstance(open_job_store("", tmp_path), SqliteJobStore)
    with pytest.raises(ValueError):
        open_job_store("mysql://x", tmp_path)
