"""gunicorn settings: one process holds one pipeline thread (the models); threads serve webhooks.

More processes would each load the models and run their own pipeline thread; scale with
GUNICORN_WORKERS only when memory (about 1.3 GB per process after a 1 MP photo, up to 2.6 GB while it
cuts a 40 MP one: docs/performance.md) and cores allow, and note that the
restart-resume step then runs in every process.
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
