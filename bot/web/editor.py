"""The cutout editor's page and routes: fix a chat result with taps and keep / erase strokes.

    GET  /edit/<token>                the page in ?lang=, else the chat user's language (zh-TW default)
    GET  /edit?t=<token>              the LIFF endpoint: LINE opens https://liff.line.me/<id>?t=... here,
         /edit?liff.state=%3Ft%3D...  first with the query folded into liff.state (no LIFF SDK needed)
    GET  /edit/<token>/photo.jpg      the photo on the editing grid (what the page draws on)
    POST /edit/<token>/alpha.png      {"marks": [...]} -> the alpha after the marks, greyscale PNG, grid size
    POST /edit/<token>/save           {"marks": [...]} -> a new version of the result, sent to the chat

The token is an editor link (bot/edits.EditLinks): it opens only its own result and expires with
it; an expired or altered link gets a page that says so in the visitor's language. The engine
runs in the request thread inside the API's bounded lane (no model is involved; a busy lane
answers 503 at once), on a grid cached per result (bot/edits.Editor), so a preview after the first
costs one solve on the editing grid.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from urllib.parse import parse_qs

from flask import Blueprint, Response, jsonify, request

from bot import edits
from bot.edits import WEB_CHANNEL, EditLinks, Editor, NotEditable, TooManyVersions
from bot.i18n import LANGUAGES, MESSAGES, say
from bot.lane import LaneFull, WaitLane
from pipeline.editing.edit import MarkError
from storage.jobs import Job
from storage.urls import ExpiredToken, InvalidToken

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 4 * 1024 * 1024  # 500 marks of long strokes fit with room to spare
HTML_LANG = {"zh-TW": "zh-Hant-TW", "en": "en"}


def page_texts(language: str) -> dict[str, str]:
    """The editor's words (bot/i18n.py keys editor_* and the card's button names)."""
    table = MESSAGES[language]
    texts = {key[len("editor_"):]: value for key, value in table.items() if key.startswith("editor_")}
    texts["saved_title"] = table["card_edited_title"]
    texts["too_many_versions"] = say(language, "editor_too_many_versions", max=edits.MAX_VERSIONS)
    return texts


def requested_language() -> str | None:
    """?lang= when given, else None (the caller falls back to the user's or the browser's)."""
    wanted = request.args.get("lang", "")
    return wanted if wanted in LANGUAGES else None


def browser_language(default: str) -> str:
    best = request.accept_languages.best_match(["zh-TW", "zh", "en"])
    return "en" if best == "en" else default


def editor_blueprint(conversation, lane: WaitLane) -> Blueprint:
    """Routes over the conversation's editor and links (shared with the chat's 只留主體)."""
    blueprint = Blueprint("editor", __name__)
    settings = conversation.settings
    links: EditLinks = conversation.edit_links
    editor: Editor = conversation.editor
    page_html = (STATIC_DIR / "editor.html").read_text(encoding="utf-8")
    days = max(1, settings.result_ttl_s // 86400)

    def language_for(job: Job | None) -> str:
        chosen = requested_language()
        if chosen:
            return chosen
        if job is not None:  # the language the chat speaks with this user (the link says it when not the default)
            stored = conversation.jobs.user_state(job.channel, job.user_id).get("language")
            return stored if stored in LANGUAGES else settings.default_language
        return browser_language(settings.default_language)  # a refused link: whose it was is unknown

    def refusal(status: int, kind: str, job: Job | None = None) -> Response:
        """A whole page (not JSON): people open these links from a chat."""
        language = language_for(job)
        texts = MESSAGES[language]
        title, text = texts[f"editor_{kind}_title"], texts[f"editor_{kind}_text"].format(days=days)
        body = (f'<!doctype html><html lang="{HTML_LANG[language]}"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>{escape(title)}</title><style>body{{margin:0;font:17px/1.6 system-ui,-apple-system,'
                '"Noto Sans TC","PingFang TC",sans-serif;color:#1b1f24;background:#f4f6f8}}main{{max-width:32em;'
                'margin:12vh auto;padding:24px;background:#fff;border-radius:16px}}h1{{font-size:1.35rem;margin:0 0 .5em}}'
                f'</style></head><body data-refused="{kind}"><main role="main"><h1>{escape(title)}</h1>'
                f'<p>{escape(text)}</p></main></body></html>')
        return secured(Response(body, status=status, mimetype="text/html"))

    def expired_job(token: str) -> Job | None:
        """Whose an expired (but genuine) link was, to answer in their language."""
        try:
            return conversation.jobs.get(links.job_id(token, now=1))  # signature checked, expiry not
        except InvalidToken:
            return None

    def opened(token: str) -> Job:
        """The token's result; raises InvalidToken / ExpiredToken / NotEditable."""
        return editor.job(links.job_id(token))

    def page_for(token: str) -> Response:
        try:
            job = opened(token)
        except ExpiredToken:
            return refusal(410, "expired", expired_job(token))
        except InvalidToken:
            return refusal(404, "invalid")
        except NotEditable:
            return refusal(410, "expired", expired_job(token))
        language = language_for(job)
        try:
            with lane.enter():
                editor.opening(job)
                width, height = editor.display_size(job)
                main_only = editor.main_only_marks(job)
        except LaneFull:
            return secured(Response(MESSAGES[language]["busy"], status=503, mimetype="text/plain",
                                    headers={"Retry-After": str(lane.retry_after_s)}))
        full_height, full_width = editor.loaded(job).full_shape
        saved = job.result.get("versions", [])
        config = {"base": f"/edit/{token}", "width": width, "height": height, "fullWidth": full_width,
                  "fullHeight": full_height, "marks": saved[-1]["marks"] if saved else [], "mainOnly": main_only,
                  "lang": language, "other": "en" if language != "en" else "zh-TW",
                  "web": job.channel == WEB_CHANNEL}  # a photo from the web page: Save does not go to a chat
        html = (page_html.replace("__LANG__", HTML_LANG[language])
                .replace("__TITLE__", escape(MESSAGES[language]["editor_title"]))
                .replace("__TEXTS__", script_json(page_texts(language)))
                .replace("__CONFIG__", script_json(config)))
        return secured(Response(html, mimetype="text/html"))

    @blueprint.get("/edit/<token>")
    def edit_page(token: str):
        return page_for(token)

    @blueprint.get("/edit")
    @blueprint.get("/edit/")
    def liff_endpoint():
        token = request.args.get("t", "")
        state = request.args.get("liff.state", "")
        if not token and state:  # LIFF's first load: the LIFF URL's own query, folded into liff.state
            token = parse_qs(state.lstrip("/").lstrip("?")).get("t", [""])[0]
        return page_for(token) if token else refusal(404, "invalid")

    @blueprint.get("/edit/<token>/photo.jpg")
    def edit_photo(token: str):
        try:
            job = opened(token)
            with lane.enter():
                data = editor.photo_jpeg(job)
        except Exception as error:  # noqa: BLE001 - answered() re-raises what is not ours
            return answered(error)
        response = Response(data, mimetype="image/jpeg")
        response.headers["Cache-Control"] = "private, max-age=3600"
        return secured(response)

    @blueprint.post("/edit/<token>/alpha.png")
    def edit_preview(token: str):
        try:
            job = opened(token)
            marks = read_marks()
            with lane.enter():
                data = editor.alpha_png(job, marks)
        except Exception as error:  # noqa: BLE001
            return answered(error)
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "no-store"
        return secured(response)

    @blueprint.post("/edit/<token>/save")
    def edit_save(token: str):
        try:
            job = opened(token)
            marks = read_marks()
            web = job.channel == WEB_CHANNEL
            with lane.enter():
                version = editor.save(job.id, marks)
        except Exception as error:  # noqa: BLE001
            return answered(error)
        repeated = {"repeated": True} if version.get("repeated") else {}
        if web:  # the page's downloads and backgrounds now draw this version (bot.web.page_jobs.edited)
            return secured(jsonify(version=version["number"], sent=False, web=True, **repeated))
        # Save pressed again with nothing changed (a second tab, a double tap, another process) stores
        # no new version; asking to send it again sends nothing twice (one send per version), and
        # sends it now if the first Save's process stopped between storing and sending.
        sent = conversation.send_edited(job.id, version["number"]) is not None
        return secured(jsonify(version=version["number"], sent=sent or bool(repeated), **repeated))

    return blueprint


def read_marks() -> list:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise MarkError("too many marks")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise MarkError("send {\"marks\": [...]} as JSON")
    marks = body.get("marks", [])
    if not isinstance(marks, list):
        raise MarkError("marks must be a list")
    return marks


def answered(error: Exception) -> Response:
    """An editor call's failure in the API's error shape (the page shows its own words)."""
    if isinstance(error, (ExpiredToken, NotEditable)):
        status, code, title = 410, "expired", "This cutout has expired"
    elif isinstance(error, InvalidToken):
        status, code, title = 404, "invalid_link", "This link doesn't work"
    elif isinstance(error, MarkError):
        status, code, title = 400, "invalid_marks", f"Invalid marks: {error}"
    elif isinstance(error, TooManyVersions):
        status, code, title = 429, "too_many_versions", f"Saved versions of one cutout: at most {error.limit}"
    elif isinstance(error, LaneFull):
        response = jsonify(errors=[{"title": "Busy; retry shortly", "code": "busy"}])
        response.status_code, response.headers["Retry-After"] = 503, "5"
        return secured(response)
    else:
        raise error
    response = jsonify(errors=[{"title": title, "code": code}])
    response.status_code = status
    return secured(response)


def script_json(value) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def secured(response: Response) -> Response:
    # The token is in the URL: never send it on as a Referer. Nothing here is framed or sniffed.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    return response
