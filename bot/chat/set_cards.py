"""What a set of photos gets back: one carousel of results plus one summary card.

The summary card holds the ZIP of the whole set (behind a button, like every link), "background
for all" and "sizes for all", and lists what failed in the user's language; its quick replies
apply a preset or a background to every photo at once. A channel shows at most `max_cards`
cards side by side (LINE 12 bubbles, Messenger 10 elements); the rest are in the ZIP.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from bot.channels.cards import MAX_QUICK_REPLIES, ResultCards
from bot.i18n import say
from bot.replies import Card, Carousel, Choice, Link, Reply, Text
from storage.jobs import Job, JobStatus

# A photo's failure (its UserFacingError key) -> the few words the summary shows.
REASONS = {
    "no_subject": "reason_no_subject", "bad_image_corrupt": "reason_unreadable",
    "bad_image_unsupported": "reason_unreadable", "bad_image_empty": "reason_unreadable",
    "too_many_pixels": "reason_too_large", "too_large_limit": "reason_too_large",
    "fetch_timeout": "reason_fetch", "fetch_failed": "reason_fetch", "busy": "reason_busy",
    "rate_limited": "reason_rate_limited", "expired": "reason_expired",
}


def succeeded(job: Job) -> bool:
    return job.status == JobStatus.FINISHED and "cutout" in job.result


@dataclass
class SetCards:
    cards: ResultCards

    def days(self) -> int:
        return max(1, self.cards.settings.result_ttl_s // 86400)

    def summary(self, album: Job, total: int, members: dict[int, Job], included: list[int], language: str,
                max_cards: int) -> list[Reply]:
        """The set's answer: the results that worked as a carousel, then the summary card."""
        done = [index for index in included if succeeded(members[index])]
        failures = [say(language, "album_failure_line", index=index,
                        reason=say(language, REASONS.get(members[index].result.get("failure_key", ""),
                                                          "reason_failed")))
                    for index in included if not succeeded(members[index])]
        failures += [say(language, "album_failure_line", index=index, reason=say(language, "reason_missing"))
                     for index in range(1, total + 1) if index not in members]
        if not done:
            return [Text(say(language, "album_none", lines="\n".join(failures)))]
        shown = done[:max_cards]
        cards = tuple(self.cards.result_card(say(language, "card_album_item_title", index=index, total=total),
                                       say(language, "card_done_subtitle", days=self.days()),
                                       say(language, "card_done_alt"), members[index].result["preview"],
                                       members[index].result["cutout"], members[index].id, language, ())
                      for index in shown)
        if failures:
            title = say(language, "card_album_title_some", done=len(done), failed=len(failures))
        else:
            title = say(language, "card_album_title_all", count=len(done))
        lines = [*failures, say(language, "card_album_subtitle", days=self.days())]
        if len(done) > len(shown):
            lines.append(say(language, "card_album_more", shown=len(shown)))
        return [Carousel(cards, title), self._summary_card(title, "\n".join(lines), album, language)]

    def applied(self, job: Job, album: Job, what: str, language: str, max_cards: int) -> list[Reply]:
        """"Apply to all": every photo's new version as a carousel, then the card with the ZIP."""
        items = job.result["set_items"]
        shown = items[:max_cards]
        cards = tuple(self.cards.result_card(say(language, "card_all_item_title", index=item["index"], what=what),
                                       say(language, "card_composite_subtitle", days=self.days()),
                                       what, item["composite_preview"], item["composite"], item["source_job"],
                                       language, ())
                      for item in shown)
        title = say(language, "card_all_title", what=what)
        lines = [say(language, "card_all_subtitle", count=len(items), days=self.days())]
        if len(items) > len(shown):
            lines.append(say(language, "card_album_more", shown=len(shown)))
        return [Carousel(cards, title), self._summary_card(title, "\n".join(lines), album, language,
                                                           zip_key=job.result["zip"])]

    def _summary_card(self, title: str, subtitle: str, album: Job, language: str, zip_key: str | None = None) -> Card:
        buttons = (Link(say(language, "btn_zip_all"), self.cards.urls.url(zip_key or album.result["zip"])),
                   Choice(say(language, "btn_all_backgrounds"), urlencode({"menu": "backgrounds", "set": album.id})),
                   Choice(say(language, "btn_all_sizes"), urlencode({"menu": "sizes", "set": album.id})))
        return Card(title, subtitle, title, buttons, None, self.choices(album.id, language))

    def choices(self, album_id: str, language: str) -> tuple[Choice, ...]:
        """Quick replies that apply to the whole set: the presets, then the backgrounds."""
        return (*self.cards.preset_choices("set", album_id, language),
                *self.cards.background_choices(album_id, language, target="set"))[:MAX_QUICK_REPLIES]

    def backgrounds_menu(self, album_id: str, language: str) -> list[Reply]:
        return [Text(say(language, "all_backgrounds_prompt"),
                     self.cards.background_choices(album_id, language, target="set"))]

    def sizes_menu(self, album_id: str, language: str) -> list[Reply]:
        return [Text(say(language, "all_sizes_prompt"), self.cards.preset_choices("set", album_id, language))]
