"""The result cards and menus every channel gets, decided once for all of them.

A result is one card: the preview picture (tap: the full file), a headline, and three short
buttons: Download (the signed link, only ever behind this button), New background, More; a
cutout also gets 修正去背 (the signed editor link, Card.edit). The backgrounds ride along as quick replies with colour icons. LINE draws the card as a Flex bubble
(bot/channels/flex.py), Messenger as a generic template (bot/channels/messenger.py).

Button data that comes back as ChoiceMade.data:
    bg=<choice>&job=<source job>        make a composite (bot.conversation)
    menu=backgrounds&job=<source job>   the backgrounds again, as quick replies
    menu=more&job=<source job>          the presets, mask for designers, the full transparent PNG, help
    menu=help&job=<source job>          how it works
    preset=<name>&job=<source job>      商品圖 / 做成貼圖 / 貼文尺寸 / 限動尺寸 (bot/chat/presets.py)
    fix=main&job=<source job>           只留主體: keep the largest object, saved as a new version (bot/edits.py)
    bg=<choice>&set=<album job>         the same for every photo of a set (bot/chat/set_cards.py),
    preset=<name>&set=<album job>       answered with one carousel and one ZIP
    menu=backgrounds&set=<album job>    the backgrounds / presets for the whole set, as quick replies
    menu=sizes&set=<album job>

Where the presets sit: the quick replies under a result are the backgrounds, most used first (with
four brand colours they already take 11 of the 13 places), so the presets lead the "More" card's
quick replies instead, with their own icons; the card's subtitle names them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlencode

from PIL import Image as PILImage

from bot import backgrounds
from bot.chat import presets
from bot.edits import EditLinks
from bot.i18n import say
from bot.replies import Card, Choice, Link, Picture, Reply, Text
from bot.results import UrlBuilder
from settings import Settings
from storage.files import BlobStore
from storage.jobs import Job

CARD_IMAGE_MAX_SIDE = 1024  # LINE Flex image: at most 1024 x 1024 px
CARD_IMAGE_MAX_BYTES = 1_000_000
MAX_QUICK_REPLIES = 13  # LINE and Messenger alike
TITLE_LIMIT = 40  # one line on a phone (Messenger allows 80)
PRESET_QUICK_REPLIES = len(presets.CHAT_PRESETS)


def choice_fields(data: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(data).items()}


@dataclass
class ResultCards:
    settings: Settings
    blobs: BlobStore
    urls: UrlBuilder
    edit_links: EditLinks | None = None  # the Edit action (bot/edits.py); None: no editor

    # --- what a finished job shows ---------------------------------------------------------------
    def result(self, job: Job, language: str, campaign_title: str | None = None) -> list[Reply]:
        days = max(1, self.settings.result_ttl_s // 86400)
        result = job.result
        if "preset" in result:
            return [self.preset_card(job, language, days)]
        if "composite" in result:
            source_id, choice = result["source_job"], result["choice"]
            if choice == "mask":
                title, subtitle = say(language, "card_mask_title"), say(language, "card_mask_subtitle", days=days)
            elif choice == "cutout":
                title, subtitle = say(language, "card_done_title"), say(language, "card_done_subtitle", days=days)
            else:
                background = backgrounds.choice_label(choice, language, self.settings.brand_colors)
                title = say(language, "card_composite_title", background=background)
                subtitle = say(language, "card_composite_subtitle", days=days)
            return [self.result_card(title, subtitle, title, result["composite_preview"], result["composite"],
                               source_id, language, self.background_choices(source_id, language))]
        if "poster" in result:
            title = say(language, "card_campaign_title", title=_shorten(campaign_title or result["campaign"], 24))
            plain = self.choice("cutout", job.id, language)
            return [self.result_card(title, say(language, "card_campaign_subtitle", days=days), title,
                               result["poster_preview"], result["poster"], job.id, language,
                               (plain, *self.background_choices(job.id, language))[:MAX_QUICK_REPLIES])]
        # A cutout (or an edited version of one: its buttons act on the result it edits).
        source_id = result.get("edited", job.id)
        edited = "edited" in result
        choices = self.background_choices(source_id, language)
        subtitle = say(language, "card_done_subtitle", days=days)
        if not edited and result.get("objects", 1) > 1:  # several things cut out: offer the quick fix first
            choices = (Choice(say(language, "btn_main_only"), urlencode({"fix": "main", "job": source_id})),
                       *choices)[:MAX_QUICK_REPLIES]
        card = self.result_card(say(language, "card_edited_title" if edited else "card_done_title"), subtitle,
                                say(language, "card_edited_alt" if edited else "card_done_alt"), result["preview"],
                                result["cutout"], source_id, language, choices)
        edit_url = self.edit_links.url(source_id, language) if self.edit_links is not None else None
        return [replace(card, edit=Link(say(language, "btn_edit"), edit_url)) if edit_url else card]

    def preset_card(self, job: Job, language: str, days: int) -> Card:
        """A preset's result: its size in the title; a sticker's second button is the set's ZIP."""
        result, name = job.result, job.result["preset"]
        size = "×".join(map(str, result["size"]))
        title = say(language, f"card_preset_{name}_title", size=size)
        if name in ("post", "story"):
            background = backgrounds.choice_label(result["scene"], language, self.settings.brand_colors)
            subtitle = say(language, "card_preset_scene_subtitle", background=background, days=days)
        else:
            subtitle = say(language, f"card_preset_{name}_subtitle", days=days)
        source_id = result["source_job"]
        second = Link(say(language, "btn_sticker_set"), self.urls.url(result["sticker_zip"])) \
            if "sticker_zip" in result else None
        choices = (*self.preset_choices("job", source_id, language, skip=name),
                   *self.background_choices(source_id, language))[:MAX_QUICK_REPLIES]
        return self.result_card(title, subtitle, title, result["composite_preview"], result["composite"], source_id,
                          language, choices, second=second)

    def result_card(self, title: str, subtitle: str, alt_text: str, preview_key: str, file_key: str, source_id: str,
              language: str, choices: tuple[Choice, ...], second: Link | Choice | None = None) -> Card:
        file_url = self.urls.url(file_key)
        buttons = (Link(say(language, "btn_download"), file_url),
                   second or Choice(say(language, "btn_backgrounds"),
                                    urlencode({"menu": "backgrounds", "job": source_id})),
                   Choice(say(language, "btn_more"), urlencode({"menu": "more", "job": source_id})))
        return Card(_shorten(title, TITLE_LIMIT), subtitle, alt_text, buttons,
                    self.picture(preview_key, file_url), choices)

    # --- menus ---------------------------------------------------------------------------------------
    def backgrounds_menu(self, source_id: str, language: str) -> list[Reply]:
        return [Text(say(language, "backgrounds_prompt"), self.background_choices(source_id, language))]

    def more_menu(self, source: Job, language: str) -> list[Reply]:
        title = say(language, "card_more_title")
        buttons = (self.choice("mask", source.id, language, label=say(language, "btn_mask")),
                   Link(say(language, "btn_transparent"), self.urls.url(source.result["cutout"])),
                   Choice(say(language, "btn_help"), urlencode({"menu": "help", "job": source.id})))
        choices = (*self.preset_choices("job", source.id, language), *self.background_choices(source.id, language))
        return [Card(title, say(language, "card_more_subtitle"), title, buttons, None, choices[:MAX_QUICK_REPLIES])]

    # --- pieces ----------------------------------------------------------------------------------------
    def background_choices(self, source_id: str, language: str, target: str = "job") -> tuple[Choice, ...]:
        ids = backgrounds.choice_ids(self.settings.brand_colors)
        return tuple(self.choice(choice, source_id, language, target=target) for choice in ids)[:MAX_QUICK_REPLIES]

    def choice(self, choice: str, source_id: str, language: str, label: str | None = None,
               target: str = "job") -> Choice:
        """A background button for one result (target "job") or a whole set (target "set")."""
        return Choice(label or backgrounds.choice_label(choice, language, self.settings.brand_colors),
                      urlencode({"bg": choice, target: source_id}), self.icon_url(choice))

    def preset_choices(self, target: str, target_id: str, language: str, skip: str = "") -> tuple[Choice, ...]:
        """商品圖, 做成貼圖, 貼文尺寸, 限動尺寸 for one result (target "job") or a whole set ("set")."""
        return tuple(Choice(say(language, f"preset_{name}"), urlencode({"preset": name, target: target_id}),
                            self.settings.public_base_url + presets.icon_path(name))
                     for name in presets.CHAT_PRESETS if name != skip)

    def icon_url(self, choice: str) -> str:
        return self.settings.public_base_url + backgrounds.icon_path(choice, self.settings.brand_colors)

    def picture(self, preview_key: str, open_url: str) -> Picture:
        """The card's picture: the stored preview, or a smaller copy when it is over LINE's
        1024 px / 1 MB card limits (an opaque composite's preview can be the full-size JPEG)."""
        data = self.blobs.get(preview_key)
        with PILImage.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max(width, height) <= CARD_IMAGE_MAX_SIDE and len(data) <= CARD_IMAGE_MAX_BYTES \
                    and image.format in ("JPEG", "PNG"):
                return Picture(self.urls.url(preview_key), width, height, open_url)
            small = image.convert("RGB")
        small.thumbnail((CARD_IMAGE_MAX_SIDE, CARD_IMAGE_MAX_SIDE), PILImage.LANCZOS)
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=85, optimize=True)
        key = preview_key.rsplit(".", 1)[0] + "-card.jpg"
        self.blobs.put(key, buffer.getvalue())
        return Picture(self.urls.url(key), small.width, small.height, open_url)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
