"""gunicorn settings: one process holds one pipeline thread (the models); threads serve webhooks.

More processes would each load the models and run their own pipeline thread; scale with
GUNICORN_WORKERS only when memory (about 1.3 GB per process after a 1 MP photo, up to 2.6 GB while it
cuts a 40 MP one: docs/performance.md) and cores allow. The processes share the job table and
work on a job only under its lease there (dispatch/leases.py), so each job is answered once: a
process that dies leaves its jobs to the next one that boots on this host, or to any other once
their lease (CUTOUT_LEASE_S) runs out. The web page's and the API's per-client rate limits are
counted per process (N processes admit up to N times the limit); the chat's limit is counted in the
shared job table.
"""
import os

# HOST=127.0.0.1 keeps a local run (tests, scripts/bench_load.py) off the network.
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("GUNICORN_WORKERS", "1"))
worker_class = "gthread"
# API requests may hold at most half of these while they wait (CUTOUT_API_CONCURRENCY, bot/lane.py);
# the rest always serve webhooks and health checks.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 120
graceful_timeout = 30
accesslog = "-"
