"""API error titles in the caller's language (Accept-Language): zh-TW for Chinese, else English.

remove.bg-shaped errors keep their `code` for programs; the `title` is for people, and the web page
shows it as it is, so it follows the language the page (or any client) asks for.
"""
from __future__ import annotations

import re

from flask import request

ZH_TW_TITLES = {
    "file_too_large": "檔案太大了（上限 {limit}），請傳小一點的照片。",
    "too_large": "檔案太大了（上限 {limit}），請傳小一點的照片。",
    "too_many_pixels": "照片的像素太多了，請縮小後再傳。",
    "corrupt": "這個檔案壞掉了或沒有傳完整，無法讀取。請重新上傳照片。",
    "unsupported": "這不是看得懂的照片格式。請上傳 JPEG、PNG、WebP 或 HEIC 照片。",
    "empty": "收到的檔案是空的，請重新上傳。",
    "missing_source": "沒有收到照片：請上傳 image_file、image_file_b64 或 image_url。",
    "invalid_b64": "image_file_b64 不是有效的 base64。",
    "unknown_foreground": "這張照片找不到明顯的主體。請換一張主體清楚的照片（商品、人物或寵物）。",
    "auth_failed": "缺少或錯誤的 API 金鑰（X-Api-Key）。",
    "rate_limit_exceeded": "請求太頻繁了，請稍等一下再試。",
    "busy": "目前處理中的請求太多，請稍後再試。",
    "queue_full": "排隊的照片太多了，請稍後再試。",
    "timeout": "處理時間太長了，請稍後再試。",
    "internal_error": "伺服器出了點問題，請稍後再試。",
    "unknown_parameter": "有不認得的參數，請對照 /api/v1/openapi.json（detail 有寫是哪一個）。",
    "invalid_preset": "這個預設尺寸的設定不正確（detail 有寫原因）。",
    "invalid_scale": "scale 要是 10% 到 100%，或 original。",
    "invalid_position": "position 要是 original、center，或「x% y%」。",
    "invalid_roi": "roi 要是「x1 y1 x2 y2」（px 或 %），而且要落在照片裡。",
    "missing_marks": "沒有收到修正標記：請送 marks（點選與筆刷的 JSON 清單）。",
    "invalid_marks": "marks 的格式不正確（detail 或說明有寫是哪一個標記），請對照 /api/v1/openapi.json。",
    "roi_with_marks": "修正時不能同時用 roi：請用 marks 指出要保留或去掉的部分。",
    "empty_cutout": "照這些標記修正後就沒有主體了，請保留至少一部分。",
    "invalid_json": "請求的 JSON 內容必須是一個物件（{{...}}）。",
    "invalid_size": "size 要是 preview、full 或 auto。",
    "invalid_format": "format 要是 png、jpg 或 auto。",
    "invalid_channels": "channels 要是 rgba 或 alpha。",
    "invalid_bg_color": "bg_color 不是看得懂的顏色，請用像 ff0000 或 red 這樣的寫法。",
    "invalid_bg_image": "背景圖片無法讀取，請換一張 JPEG、PNG 或 WebP 圖片。",
    "invalid_crop_margin": "crop_margin 的格式不正確，例如 30px 或 10%。",
    "invalid_crop": "crop 要是 true 或 false。",
    "invalid_add_shadow": "add_shadow 要是 true 或 false。",
    "job_not_found": "找不到這張照片：它可能已經過期了，請重新傳送。",
    "expired": "這張照片已經過期了，請重新傳送。",
    "not_ready": "去背還沒完成，請稍等一下。",
    "not_yours": "這張照片是從別的頁面傳的，只有那個頁面能修正它。",
    "missing_ids": "請送出要打包的照片清單（ids）。",
    "too_many_ids": "一次打包的照片太多了，請分批下載。",
    "not_your_photo": "只能打包從這個頁面傳送的照片。",
}
# Downloads (bot/fetch.py's reasons) of the photo (url_<reason>) or of a background (bg_url_<reason>).
URL_FIELDS = {"url_": "照片網址", "bg_url_": "背景圖片網址"}
URL_REASONS = {
    "blocked": "{what}無法使用：只接受公開的 https 圖片網址。",
    "network": "{what}下載失敗（連不上），請確認網址後再試，或直接上傳檔案。",
    "http": "{what}下載失敗（對方伺服器回應錯誤），請確認網址是否正確。",
    "timeout": "{what}下載太久了，請直接上傳檔案，或換一個網址。",
    "too_large": "{what}的圖片太大了，請換小一點的圖片，或直接上傳檔案。",
}
LIMIT = re.compile(r"limit ([^)]+)\)")


def wants_chinese() -> bool:
    best = request.accept_languages.best_match(["en", "zh-TW", "zh-Hant", "zh"])
    return bool(best and best.startswith("zh"))


def localised_title(code: str, title: str) -> str:
    """The title in the request's language where we have one for this code; else the English title."""
    template = ZH_TW_TITLES.get(code) or _url_template(code)
    if template is None or not wants_chinese():
        return title
    limit = LIMIT.search(title)
    return template.format(limit=limit.group(1) if limit else "20 MB")


def _url_template(code: str) -> str | None:
    # bg_url_ before url_: the longer prefix names the field.
    for prefix in sorted(URL_FIELDS, key=len, reverse=True):
        if code.startswith(prefix) and code[len(prefix):] in URL_REASONS:
            return URL_REASONS[code[len(prefix):]].replace("{what}", URL_FIELDS[prefix])
    return None
