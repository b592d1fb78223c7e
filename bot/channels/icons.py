"""GET /icons/bg/<choice>.png: the quick-reply icons (small square PNGs, public, cached a day).

LINE (quickReply imageUrl: HTTPS, PNG, 1:1, <= 1 MB) and Messenger (quick_replies image_url)
fetch these from PUBLIC_BASE_URL. The app registers the route once when any chat channel is on.
Backgrounds and the presets
(`preset-<name>`, bot/chat/presets.py) share the route.
"""
from __future__ import annotations

from flask import Blueprint, abort

from bot import backgrounds
from bot.chat import presets
from settings import Settings


def icon_blueprint(settings: Settings) -> Blueprint:
    blueprint = Blueprint("chat_icons", __name__)

    @blueprint.get(f"{backgrounds.ICON_PATH}/<choice>.png")
    def view(choice: str):
        try:
            if choice.startswith(presets.ICON_PREFIX):
                data = presets.icon_png(choice[len(presets.ICON_PREFIX):])
            else:
                data = backgrounds.icon_png(choice, settings.brand_colors)
        except (KeyError, ValueError):  # no such choice, or a brand colour that is not a colour
            abort(404)
        return data, 200, {"Content-Type": "image/png", "Cache-Control": "public, max-age=86400",
                           "X-Content-Type-Options": "nosniff"}

    return blueprint
