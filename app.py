"""create_app(): settings -> storage -> pipeline worker -> conversation -> channel blueprints.

Procfile: web: gunicorn -c gunicorn_conf.py "app:create_app()"
"""
from __future__ import annotations

import logging
import mimetypes
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask import Flask, abort, jsonify, make_response, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix

from bot.admin import admin_blueprint
from bot.web.api_titles import localised_title
from bot.campaigns import CampaignStore
from bot.channels.icons import icon_blueprint
from bot.channels.line import LineChannel
from bot.channels.messenger import MessengerChannel
from bot.conversation import Conversation, LaneClosed
from bot.lane import WaitLane
from bot.results import UrlBuilder
from bot.web.api import web_blueprint
from bot.web.editor import editor_blueprint
from dispatch import conversation_class
from pipeline.cutout import Pipeline
from pipeline.decode import format_megabytes
from pipeline.stats import Metrics
from pipeline.worker import PipelineWorker
from settings import Settings
from storage.files import BlobNotFound, BlobStore
from storage.open import open_blob_store, open_job_store
from storage.retention import expire
from storage.urls import ExpiredToken, InvalidToken, UrlSigner, signing_secret

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 3600


def create_app(settings: Settings | None = None, pipeline: Pipeline | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__, static_folder=None)  # the page's files are served by bot.web.api
    configure_request_limits(app, settings)
    if settings.trusted_proxies:
        # Behind LINE's required HTTPS proxy every request would otherwise come from the proxy.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    # Embedded default: files and SQLite under the data folder; a fleet: S3 and PostgreSQL.
    blobs = open_blob_store(settings.blob_url, settings.data_dir)
    jobs = open_job_store(settings.database_url, settings.data_dir)
    signer = UrlSigner(signing_secret(settings.signing_secret, settings.data_dir), settings.result_ttl_s)
    urls = UrlBuilder(settings.public_base_url, signer)
    pipeline = pipeline or Pipeline()
    # On a GPU, batches pay off; on a CPU onnxruntime already uses every core for one image.
    batch_size = settings.batch_size if settings.batch_size > 1 or not pipeline.uses_torch else 16
    worker = PipelineWorker(settings.queue_size, max_batch=batch_size, max_wait_s=settings.batch_wait_ms / 1000,
                            overlap=settings.pipeline_overlap)
    io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="io")
    lane = WaitLane(settings.api_concurrency)
    metrics = Metrics()
    campaigns = CampaignStore(jobs, blobs)
    if settings.campaigns_file:
        loaded = campaigns.load_yaml(Path(settings.campaigns_file))
        log.info("loaded %d campaigns from %s", len(loaded), settings.campaigns_file)
    # In-process by default; with CUTOUT_QUEUE_URL jobs are enqueued for Celery workers (dispatch/).
    conversation = conversation_class(settings)(settings, jobs, blobs, urls, worker, pipeline, io,
                                                metrics=metrics, campaigns=campaigns)

    for secret, channel_class, variable in ((settings.line_channel_secret, LineChannel, "LINE_CHANNEL_SECRET"),
                                            (settings.messenger_app_secret, MessengerChannel, "MESSENGER_APP_SECRET")):
        if not secret:
            log.warning("%s not set: the %s webhook is off", variable, channel_class.name)
            continue
        channel = channel_class(settings)
        conversation.register(channel)
        app.register_blueprint(channel.blueprint(conversation.accept))
    if conversation.channels:  # the quick replies' icons, once for every chat channel
        app.register_blueprint(icon_blueprint(settings))

    app.extensions["cutout"] = {
        "settings": settings, "blobs": blobs, "jobs": jobs, "signer": signer, "urls": urls,
        "pipeline": pipeline, "worker": worker, "conversation": conversation, "ready": threading.Event(),
        "metrics": metrics, "lane": lane,
    }
    app.register_blueprint(web_blueprint(settings, pipeline, worker, metrics, conversation.options, lane, signer))
    app.register_blueprint(editor_blueprint(conversation, lane))  # /edit/<token>: fix a chat cutout
    app.register_blueprint(admin_blueprint(settings, campaigns, pipeline, worker, conversation.options,
                                           conversation.caption_font, lane))
    app.extensions["cutout"]["campaigns"] = campaigns
    register_result_routes(app, blobs, signer)
    register_health_routes(app)
    register_error_handlers(app)
    app.after_request(finish_reading_body)

    worker.start()
    start_background(app, settings, pipeline, conversation, blobs)
    return app


def configure_request_limits(app: Flask, settings: Settings) -> None:
    """Body limits sized from the image limit, so every accepted way of sending a photo fits.

    A photo may come base64-encoded in a multipart field (4/3 of its size) next to a background
    file; Werkzeug's default 500 kB cap on in-memory form fields would refuse such a photo.
    """
    encoded = (settings.max_image_bytes + 2) // 3 * 4 + 64 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = encoded
    app.config["MAX_CONTENT_LENGTH"] = 2 * encoded + 1024 * 1024


def finish_reading_body(response):
    """Read whatever of the request body a view left unread (an early 403, 429 or 503).

    Why: gunicorn's gthread worker drains at most 64 kB of an unread body itself and then closes
    the connection on its event-loop thread, lingering up to 2 s for the client. Every such close
    stalls all other connections of the process, webhooks included (measured: acks of 4 s while
    API clients got 503s). Bodies over the request limit are left alone (Werkzeug refused them).
    """
    try:
        stream = request.stream
        while stream.read(256 * 1024):
            pass
    except (HTTPException, OSError, ValueError):
        pass  # too large, or the client went away: nothing to keep the connection for
    return response


def register_error_handlers(app: Flask) -> None:
    """Every error answers in the API's JSON shape, 413 and unexpected 500s included."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        title = error.description or error.name
        if error.code == 413:  # the body is over MAX_CONTENT_LENGTH: name the limit people know
            code = "file_too_large"
            title = f"File too large (limit {format_megabytes(app.extensions['cutout']['settings'].max_image_bytes)})"
        response = jsonify(errors=[{"title": localised_title(code, title), "code": code}])
        response.status_code = error.code or 500
        for name, value in error.get_headers():  # keep Allow, WWW-Authenticate, Retry-After
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(InternalServerError)
    def internal_error(error: InternalServerError):
        original = getattr(error, "original_exception", None)
        if original is not None:
            log.error("unhandled error on %s", request.path, exc_info=original)
        return jsonify(errors=[{"title": localised_title("internal_error", "Internal server error"),
                                "code": "internal_error"}]), 500


def start_background(app: Flask, settings: Settings, pipeline: Pipeline, conversation: Conversation,
                     blobs: BlobStore) -> None:
    ready: threading.Event = app.extensions["cutout"]["ready"]

    def boot() -> None:
        # With Celery workers the models live there; this process loads them on its first API call.
        if settings.warm_up and not settings.queue_url:
            try:
                # The graphs for every batch size the pipeline thread may run (on a GPU) are made now.
                pipeline.warm_up(conversation.options, max_batch=app.extensions["cutout"]["worker"].max_batch)
            except Exception:
                log.exception("model warm-up failed; the first job will try again")
        conversation.caption_font()
        ready.set()
        resumed = conversation.resume()
        if resumed:
            log.info("resumed %d unfinished jobs", resumed)

    def sweep_forever() -> None:
        stop = threading.Event()
        while not stop.wait(SWEEP_EVERY_S):
            try:
                expire(blobs, conversation.jobs, settings)
            except Exception:  # noqa: BLE001 - the next hour tries again; the sweeper must not die
                log.exception("sweep failed")

    def take_over_forever() -> None:
        """Jobs another process of this job table held and left (it died mid-job): taken over
        once its lease runs out, without waiting for a restart."""
        ready.wait()
        stop = threading.Event()
        while not stop.wait(settings.lease_s):
            try:
                conversation.resume_abandoned()
            except LaneClosed:  # this process is stopping
                return
            except Exception:  # noqa: BLE001 - the next period tries again
                log.exception("taking over abandoned jobs failed")

    threading.Thread(target=boot, name="boot", daemon=True).start()
    if not settings.queue_url:  # with Celery workers, beat runs the sweep once for the fleet
        threading.Thread(target=sweep_forever, name="sweeper", daemon=True).start()
        threading.Thread(target=take_over_forever, name="take-over", daemon=True).start()


def register_result_routes(app: Flask, blobs: BlobStore, signer: UrlSigner) -> None:
    @app.get("/r/<token>")
    @app.get("/r/<token>/<name>")
    def result(token: str, name: str | None = None):
        try:
            key = signer.verify(token)
        except ExpiredToken:
            abort(410, "this link has expired")
        except InvalidToken:
            abort(404)
        try:
            data = blobs.get(key)
        except BlobNotFound:
            abort(410, "this result has been deleted")
        except ValueError:  # a signed key that points outside the store: nothing to serve
            abort(404)
        response = make_response(data)
        response.headers["Content-Type"] = mimetypes.guess_type(key)[0] or "application/octet-stream"
        response.headers["Cache-Control"] = "private, max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def register_health_routes(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        state = app.extensions["cutout"]
        worker: PipelineWorker = state["worker"]
        ready = state["ready"].is_set() and worker.alive and not worker.saturated
        body = {"ready": ready, "models_loaded": state["ready"].is_set(), "worker_alive": worker.alive,
                "queue_depth": worker.depth, "queue_capacity": worker.capacity}
        if hasattr(state["conversation"], "broker_depth"):  # jobs waiting for Celery workers
            body["broker_queue_depth"] = state["conversation"].broker_depth()
        return jsonify(body), (200 if ready else 503), ({} if ready else {"Retry-After": "5"})

    @app.get("/metrics")
    def metrics_page():
        state = app.extensions["cutout"]
        worker: PipelineWorker = state["worker"]
        text = state["metrics"].render(worker.depth, worker.capacity)
        if hasattr(state["conversation"], "broker_depth"):
            text += fleet_metrics(state["conversation"])
        return text, 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}


def fleet_metrics(conversation) -> str:
    """With Celery workers: the broker's queue depth, the workers answering a ping, and the shared
    job table's jobs by state."""
    lines = ["# TYPE cutout_broker_queue_depth gauge"]
    depth = conversation.broker_depth()
    lines.append(f"cutout_broker_queue_depth {depth if depth is not None else 'NaN'}")
    alive = conversation.workers_alive() if depth is not None else None  # no broker, no ping
    lines += ["# TYPE cutout_workers_alive gauge", f"cutout_workers_alive {alive if alive is not None else 'NaN'}"]
    lines.append("# TYPE cutout_jobs gauge")
    for status, count in sorted(conversation.jobs.counts_by_status().items()):
        lines.append(f'cutout_jobs{{state="{status}"}} {count}')
    return "\n".join(lines) + "\n"
