"""GET /icons/bg/<choice>.png: the quick-reply icons (small square PNGs, public, cached a day).

LINE (quickReply imageUrl: HTTPS, PNG, 1:1, <= 1 MB) and Messenger (quick_replies image_url)
fetch these from PUBLIC_BASE_URL. Every chat channel adds the route to its blueprint's app; it is
registered once per app, whichever channels are on. Backgrounds and the presets
(`preset-<name>`, bot/chat/presets.py) share the route.
"""
from __future__ import annotations

from flask import Blueprint, abort

from bot import backgrounds
from bot.chat import presets
from settings import Settings

ENDPOINT = "chat_background_icon"


def add_icon_route(blueprint: Blueprint, settings: Settings) -> None:
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

    def register(state) -> None:
        if ENDPOINT not in state.app.view_functions:
            state.app.add_url_rule(f"{backgrounds.ICON_PATH}/<choice>.png", ENDPOINT, view, methods=["GET"])

    blueprint.record(register)
