"""Every environment variable the service reads, in one place, typed and documented.

The defaults run the demo with no credentials: local files and SQLite under ./var.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _list(name: str, default: str = "") -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, default).split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    # Where inputs, results, the job database and the URL-signing secret live.
    data_dir: Path = Path("var")
    # Base of every URL we hand out (LINE needs https in production), e.g. https://cutout.example.com
    public_base_url: str = "http://localhost:8000"
    # Result links expire after this many seconds (default 7 days); a sweeper deletes the files.
    result_ttl_s: int = 7 * 24 * 3600
    # Bounded pipeline queue: when full, users are told to retry shortly.
    queue_size: int = 32
    # Dynamic batching on the pipeline thread: up to `batch_size` photos per forward pass, waiting
    # at most `batch_wait_ms` for more, and only when others are already queued.
    batch_size: int = 1
    batch_wait_ms: int = 5
    # GPU path: batches whose refinements may still be finishing while the next is segmented.
    pipeline_overlap: int = 1
    # Per-user flood limit: at most `rate_limit_count` photos per `rate_limit_window_s`.
    rate_limit_count: int = 10
    rate_limit_window_s: int = 60
    # A set of photos sent at once (LINE imageSet) counts as one request and is answered with one
    # summary; photos of the set that have not arrived after `album_wait_s` are not waited for.
    album_wait_s: int = 90
    # Input limits.
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # Whole-download deadline for every photo fetched from outside (URLs, LINE, Messenger).
    fetch_timeout_s: int = 15
    # Every call to a chat platform's API (reply, push, loading, send) gives up after this.
    platform_timeout_s: float = 10.0
    # host[:port] values trusted for image URL fetches even if private/loopback/http (tests, LANs).
    fetch_allowlist: tuple[str, ...] = ()
    # Brand colours offered as backgrounds in chat, e.g. "#e60012,#0068b7".
    brand_colors: tuple[str, ...] = ("#e60012", "#0068b7")
    default_language: str = "zh-TW"
    # Load models at start-up (off in tests that never touch the pipeline).
    warm_up: bool = True
    # LINE
    line_channel_secret: str = ""
    line_channel_access_token: str = ""
    line_api_base_url: str = ""  # when set, every LINE API call goes here (a local double in tests)
    # A LIFF app whose endpoint URL is {PUBLIC_BASE_URL}/edit: cards' Edit buttons then open the
    # editor inside LINE (https://liff.line.me/<id>?t=...); unset, the plain HTTPS link.
    line_liff_id: str = ""
    # Messenger
    messenger_app_secret: str = ""
    messenger_page_access_token: str = ""
    messenger_verify_token: str = ""
    messenger_api_base_url: str = "https://graph.facebook.com"
    messenger_graph_version: str = "v21.0"
    # HTTP API keys (none set: the API is open, as for the local demo).
    api_keys: tuple[str, ...] = ()
    # Admin page password (HTTP Basic, any user name); the admin page is off when unset.
    admin_password: str = ""
    # Campaigns to load (upsert) at start-up, for people who keep config in git.
    campaigns_file: str = ""
    # Reverse proxies in front of the app (LINE requires HTTPS, usually a proxy): that many
    # X-Forwarded-For/-Proto/-Host hops are trusted, so rate limits see the real client. 0: none.
    trusted_proxies: int = 0
    # The chat's "working" animation is renewed this often (s) while a job waits, for at most
    # loading_max_s; LINE shows each call for 20 s. 0 turns renewal off.
    loading_renew_s: float = 15.0
    loading_max_s: float = 180.0
    # HTTP API requests per minute per key (or per IP without keys).
    api_rate_limit: int = 60
    # Cutouts per minute per visitor of the web page (which needs no API key).
    page_rate_limit: int = 20
    # At most this many request threads may wait on the pipeline at once (API, admin preview);
    # kept below gunicorn's threads so webhooks and health checks always find a free thread.
    api_concurrency: int = 4
    # Wrong admin passwords allowed per client per `admin_lockout_s` before it is refused (429).
    admin_login_attempts: int = 10
    admin_lockout_s: int = 300
    # Scaling out (docs/scaling.md); unset, the embedded default: SQLite, files, the pipeline thread.
    database_url: str = ""  # postgresql://user:pass@host/db -> the job store on PostgreSQL
    blob_url: str = ""  # s3://bucket/prefix -> inputs and results on S3 (AWS_* variables for access)
    queue_url: str = ""  # redis://host:6379/0 or amqp://... -> jobs go to Celery workers
    # Shared URL-signing secret for several machines (else var/secret.key, made on first start).
    signing_secret: str = ""
    # Celery workers hold a job's lease this long and renew it while working; the sweep
    # re-enqueues jobs whose lease ran out (worker gone) or that sat unsent this long.
    lease_s: float = 60.0
    sweep_every_s: float = 30.0
    requeue_after_s: float = 900.0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ.get
        values = dict(
            data_dir=Path(env("CUTOUT_DATA_DIR", "var")),
            public_base_url=env("PUBLIC_BASE_URL", "http://localhost:8000").rstrip("/"),
            result_ttl_s=_int("CUTOUT_RESULT_TTL_S", 7 * 24 * 3600),
            queue_size=_int("CUTOUT_QUEUE_SIZE", 32),
            rate_limit_count=_int("CUTOUT_RATE_LIMIT", 10),
            batch_size=_int("CUTOUT_BATCH_SIZE", 1),
            batch_wait_ms=_int("CUTOUT_BATCH_WAIT_MS", 5),
            pipeline_overlap=_int("CUTOUT_PIPELINE_OVERLAP", 1),
            rate_limit_window_s=_int("CUTOUT_RATE_WINDOW_S", 60),
            album_wait_s=_int("CUTOUT_ALBUM_WAIT_S", 90),
            max_image_bytes=_int("CUTOUT_MAX_IMAGE_BYTES", 20 * 1024 * 1024),
            max_image_pixels=_int("CUTOUT_MAX_IMAGE_PIXELS", 40_000_000),
            fetch_timeout_s=_int("CUTOUT_FETCH_TIMEOUT_S", 15),
            platform_timeout_s=float(env("CUTOUT_PLATFORM_TIMEOUT_S", "10")),
            fetch_allowlist=_list("CUTOUT_FETCH_ALLOWLIST"),
            brand_colors=_list("CUTOUT_BRAND_COLORS", "#e60012,#0068b7"),
            default_language=env("CUTOUT_DEFAULT_LANGUAGE", "zh-TW"),
            warm_up=env("CUTOUT_WARM_UP", "1") not in ("0", "false", "no"),
            line_channel_secret=env("LINE_CHANNEL_SECRET", ""),
            line_channel_access_token=env("LINE_CHANNEL_ACCESS_TOKEN", ""),
            line_api_base_url=env("LINE_API_BASE_URL", "").rstrip("/"),
            line_liff_id=env("LINE_LIFF_ID", "").strip(),
            messenger_app_secret=env("MESSENGER_APP_SECRET", ""),
            messenger_page_access_token=env("MESSENGER_PAGE_ACCESS_TOKEN", ""),
            messenger_verify_token=env("MESSENGER_VERIFY_TOKEN", ""),
            messenger_api_base_url=env("MESSENGER_API_BASE_URL", "https://graph.facebook.com").rstrip("/"),
            messenger_graph_version=env("MESSENGER_GRAPH_VERSION", "v21.0"),
            api_keys=_list("CUTOUT_API_KEYS"),
            api_rate_limit=_int("CUTOUT_API_RATE_LIMIT", 60),
            page_rate_limit=_int("CUTOUT_PAGE_RATE_LIMIT", 20),
            loading_renew_s=float(env("CUTOUT_LOADING_RENEW_S", "15")),
            trusted_proxies=_int("CUTOUT_TRUSTED_PROXIES", 0),
            api_concurrency=_int("CUTOUT_API_CONCURRENCY", max(1, _int("GUNICORN_THREADS", 8) // 2)),
            admin_login_attempts=_int("CUTOUT_ADMIN_LOGIN_ATTEMPTS", 10),
            admin_lockout_s=_int("CUTOUT_ADMIN_LOCKOUT_S", 300),
            admin_password=env("CUTOUT_ADMIN_PASSWORD", ""),
            campaigns_file=env("CUTOUT_CAMPAIGNS_FILE", ""),
            database_url=env("CUTOUT_DATABASE_URL", ""),
            blob_url=env("CUTOUT_BLOB_URL", ""),
            queue_url=env("CUTOUT_QUEUE_URL", ""),
            signing_secret=env("CUTOUT_SIGNING_SECRET", ""),
            lease_s=float(env("CUTOUT_LEASE_S", "60")),
            sweep_every_s=float(env("CUTOUT_SWEEP_EVERY_S", "30")),
            requeue_after_s=float(env("CUTOUT_REQUEUE_AFTER_S", "900")),
        )
        values.update(overrides)
        return cls(**values)
