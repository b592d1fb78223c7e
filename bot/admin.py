"""Campaign management for fan-page managers: /admin (HTTP Basic password or API key).

Nothing here is reachable without credentials; with neither CUTOUT_ADMIN_PASSWORD nor
CUTOUT_API_KEYS set, the admin side answers 403 to everyone.
"""
from __future__ import annotations

import hmac
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, jsonify, redirect, render_template_string, request

from bot.campaigns import ASSET_NAMES, Campaign, CampaignError, CampaignStore
from bot.lane import LaneFull, WaitLane
from bot.ratelimit import SlidingWindowLimiter
from pipeline.cutout import CutoutOptions, Pipeline
from pipeline.decode import ImageDecodeError, decode_image
from pipeline.outputs.poster import PosterLayout
from pipeline.outputs.render import encode_jpeg
from pipeline.worker import PipelineWorker, QueueFull, result_or_cancel
from settings import Settings

PAGE = """<!doctype html><html lang="zh-Hant-TW"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Cutout Bot 活動管理</title>
<style>body{font-family:system-ui,"Noto Sans TC",sans-serif;max-width:900px;margin:auto;padding:16px;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:6px;text-align:left}
label{display:block;margin:8px 0 2px}input[type=text],textarea{width:100%;padding:6px}.error{color:#b00020}
.card{border:1px solid #ddd;border-radius:8px;padding:12px;margin:12px 0}img{max-width:100%}</style></head><body>
<h1><a href="/admin">活動管理 Campaigns</a></h1>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
{% if campaigns is not none %}
<p><a href="/admin/campaigns/new">＋ 新增活動 New campaign</a></p>
<table><tr><th>slug</th><th>標題 title</th><th>狀態 state</th><th>參加者 participants</th><th>照片 photos</th><th>完成圖 composites</th></tr>
{% for c, n in campaigns %}<tr><td><a href="/admin/campaigns/{{ c.slug }}">{{ c.slug }}</a></td><td>{{ c.title }}</td>
<td>{{ "進行中 active" if c.active() else "未啟用 inactive" }}</td><td>{{ n.participants }}</td><td>{{ n.photos }}</td><td>{{ n.composites }}</td></tr>{% endfor %}
</table>{% endif %}
{% if campaign is not none %}
<form method="post" action="/admin/campaigns" class="card">
<label>slug（英數小寫）<input type="text" name="slug" value="{{ campaign.slug }}" {{ "readonly" if existing }}></label>
<label>標題 title<input type="text" name="title" value="{{ campaign.title }}"></label>
<label>開始 active_from (ISO, 可空白)<input type="text" name="active_from" value="{{ campaign.active_from }}"></label>
<label>結束 active_to<input type="text" name="active_to" value="{{ campaign.active_to }}"></label>
<label><input type="checkbox" name="enabled" value="1" {{ "checked" if campaign.enabled }}> 啟用 enabled</label>
<label>關鍵字 keywords（逗號分隔）<input type="text" name="keywords" value="{{ campaign.keywords|join(',') }}"></label>
<label>LINE postback / 圖文選單 data<input type="text" name="postback_values" value="{{ campaign.postback_values|join(',') }}"></label>
<label>Messenger m.me ref<input type="text" name="messenger_refs" value="{{ campaign.messenger_refs|join(',') }}"></label>
<label>加入時的訊息 prompt<textarea name="prompt">{{ campaign.prompt }}</textarea></label>
<label>圖片文字 caption<input type="text" name="caption" value="{{ campaign.caption }}"></label>
<label>背景色 background_color<input type="text" name="background_color" value="{{ campaign.background_color }}"></label>
<label>畫布 canvas (寬x高)<input type="text" name="canvas" value="{{ layout.canvas[0] }}x{{ layout.canvas[1] }}"></label>
<label>主體框 subject_box (x,y,w,h 0..1)<input type="text" name="subject_box" value="{{ layout.subject_box|join(',') }}"></label>
<label>對齊 anchor<input type="text" name="anchor" value="{{ layout.anchor }}"></label>
<label>Logo 位置 logo_corner<input type="text" name="logo_corner" value="{{ layout.logo_corner }}"></label>
<label>狀態有效秒數 state_ttl_s<input type="text" name="state_ttl_s" value="{{ campaign.state_ttl_s }}"></label>
<p><button type="submit">儲存 Save</button></p></form>
{% if existing %}
{% for name in asset_names %}<form method="post" enctype="multipart/form-data" action="/admin/campaigns/{{ campaign.slug }}/assets/{{ name }}" class="card">
<b>{{ name }}</b> {% if name in campaign.assets %}<img src="/admin/campaigns/{{ campaign.slug }}/assets/{{ name }}.png" style="max-height:80px">{% endif %}
<input type="file" name="file" accept="image/png,image/jpeg,image/webp"> <button type="submit">上傳 Upload</button></form>{% endfor %}
<form method="post" enctype="multipart/form-data" action="/admin/campaigns/{{ campaign.slug }}/preview" class="card" target="_blank">
<b>預覽 Preview</b> 用範例照片 with a sample photo: <input type="file" name="file" accept="image/*"> <button type="submit">預覽</button></form>
<p>參加者 {{ counters.participants }} · 照片 {{ counters.photos }} · 完成圖 {{ counters.composites }}</p>
{% endif %}{% endif %}
</body></html>"""


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("，", ",").split(",") if part.strip()]


def campaign_from_form(form, existing: Campaign | None) -> Campaign:
    try:
        width, height = (int(v) for v in form.get("canvas", "1080x1080").lower().split("x"))
        box = [float(v) for v in _split(form.get("subject_box", "0.1,0.15,0.8,0.85"))]
        ttl = int(form.get("state_ttl_s", "1800"))
    except ValueError:
        raise CampaignError("canvas must look like 1080x1080, subject_box like 0.1,0.15,0.8,0.85, state_ttl_s a number") from None
    layout = dict(existing.layout) if existing else {}
    layout.update(canvas=[width, height], subject_box=box, anchor=form.get("anchor", "bottom-center").strip(),
                  logo_corner=form.get("logo_corner", "top-right").strip())
    return Campaign(
        slug=form.get("slug", "").strip().lower(), title=form.get("title", ""),
        active_from=form.get("active_from", "").strip(), active_to=form.get("active_to", "").strip(),
        enabled=form.get("enabled") == "1", keywords=_split(form.get("keywords", "")),
        postback_values=_split(form.get("postback_values", "")), messenger_refs=_split(form.get("messenger_refs", "")),
        prompt=form.get("prompt", "").strip(), caption=form.get("caption", "").strip(),
        background_color=form.get("background_color", "#ffffff").strip() or "#ffffff", state_ttl_s=ttl,
        layout=layout, assets=existing.assets if existing else [])


def admin_blueprint(settings: Settings, campaigns: CampaignStore, pipeline: Pipeline, worker: PipelineWorker,
                    options: CutoutOptions, font_path, lane: WaitLane) -> Blueprint:
    blueprint = Blueprint("admin", __name__, url_prefix="/admin")
    # Wrong passwords and API keys per client address: guessing stops after a few tries per window.
    failures = SlidingWindowLimiter(settings.admin_login_attempts, settings.admin_lockout_s)

    @blueprint.before_request
    def authorise():
        if not (settings.admin_password or settings.api_keys):
            abort(403, "the admin page is off: set CUTOUT_ADMIN_PASSWORD")
        client = request.remote_addr or "unknown"
        if failures.blocked(client):  # even the right password: otherwise the lock-out is an oracle
            return jsonify(errors=[{"title": "too many failed logins; wait and retry", "code": "login_throttled"}]), \
                429, {"Retry-After": str(failures.retry_after(client))}
        key = request.headers.get("X-Api-Key", "")
        if key and any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys):
            return None
        auth = request.authorization
        if settings.admin_password and auth and auth.password is not None and hmac.compare_digest(
                auth.password.encode(), settings.admin_password.encode()):
            if request.method == "POST" and not same_origin():
                abort(403, "cross-site form posts are refused")
            return None
        if key or (auth and auth.password is not None):  # a wrong guess, not a browser's first visit
            failures.record(client)
        return Response("admin login required", 401, {"WWW-Authenticate": 'Basic realm="Cutout Bot admin"'})

    def page(**values):
        values.setdefault("campaigns", None)
        values.setdefault("campaign", None)
        values.setdefault("error", "")
        return render_template_string(PAGE, asset_names=ASSET_NAMES, **values)

    def edit_page(campaign: Campaign, existing: bool, error: str = "", status: int = 200):
        try:
            layout = campaign.poster_layout()
        except (TypeError, ValueError):  # a rejected draft: show the default layout
            layout = PosterLayout()
        counters = campaigns.counters(campaign.slug) if existing else {}
        return page(campaign=campaign, existing=existing, layout=layout, counters=counters, error=error), status

    @blueprint.get("")
    @blueprint.get("/")
    def index():
        return page(campaigns=[(c, campaigns.counters(c.slug)) for c in campaigns.all()])

    @blueprint.get("/campaigns/new")
    def new():
        return edit_page(Campaign(slug="", title=""), existing=False)

    @blueprint.get("/campaigns/<slug>")
    def edit(slug: str):
        campaign = campaigns.get(slug) or abort(404)
        return edit_page(campaign, existing=True)

    @blueprint.post("/campaigns")
    def save():
        existing = campaigns.get(request.form.get("slug", "").strip().lower())
        try:
            campaign = campaigns.save(campaign_from_form(request.form, existing))
        except CampaignError as error:
            draft = Campaign(slug=request.form.get("slug", ""), title=request.form.get("title", ""))
            return edit_page(draft, existing=existing is not None, error=str(error), status=400)
        return redirect(f"/admin/campaigns/{campaign.slug}", 303)

    @blueprint.post("/campaigns/<slug>/assets/<name>")
    def upload(slug: str, name: str):
        campaign = campaigns.get(slug) or abort(404)
        upload = request.files.get("file")
        try:
            if upload is None or not upload.filename:
                raise CampaignError("choose a file to upload")
            campaigns.put_asset(campaign, name, upload.read(8 * 1024 * 1024 + 1))
        except CampaignError as error:
            return edit_page(campaign, existing=True, error=str(error), status=400)
        return redirect(f"/admin/campaigns/{slug}", 303)

    @blueprint.get("/campaigns/<slug>/assets/<name>.png")
    def asset(slug: str, name: str):
        campaign = campaigns.get(slug) or abort(404)
        if name not in campaign.assets:
            abort(404)
        return Response(campaigns.blobs.get(f"campaigns/{slug}/{name}.png"), mimetype="image/png")

    @blueprint.post("/campaigns/<slug>/preview")
    def preview(slug: str):
        campaign = campaigns.get(slug) or abort(404)
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return jsonify(errors=[{"title": "choose a sample photo", "code": "missing_file"}]), 400
        try:
            with lane.enter():  # a preview waits on the pipeline like an API call: same bounded lane
                image = decode_image(upload.read(settings.max_image_bytes + 1), settings.max_image_bytes,
                                     settings.max_image_pixels)
                future = worker.submit(lambda: campaigns.render(campaign, *_cut(pipeline, options, image),
                                                                font_path()), "campaign preview")
                poster = result_or_cancel(future, 180)
        except ImageDecodeError as error:
            status = 413 if error.reason in ("too_large", "too_many_pixels") else 400
            return jsonify(errors=[{"title": str(error), "code": error.reason}]), status
        except (QueueFull, FutureTimeout, LaneFull):
            return jsonify(errors=[{"title": "busy, retry shortly", "code": "queue_full"}]), 503, \
                {"Retry-After": str(lane.retry_after_s)}
        return Response(encode_jpeg(poster, quality=90), mimetype="image/jpeg")

    @blueprint.get("/api/campaigns/<slug>/counters")
    def counters(slug: str):
        campaigns.get(slug) or abort(404)
        return jsonify(campaigns.counters(slug))

    return blueprint


def _cut(pipeline: Pipeline, options: CutoutOptions, image):
    result = pipeline.cutout(image, options)
    return result.foreground, result.alpha


def same_origin() -> bool:
    """Browsers send Origin (or Referer) on form posts; refuse ones from other sites."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return True  # non-browser clients (curl) send neither
    return urlsplit(source).netloc == request.host
