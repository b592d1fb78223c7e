"""LINE Messaging API channel, through line-bot-sdk v3.

POST /callback/line: the raw body is verified against X-Line-Signature (400 and nothing processed
when it does not match), every event of the batch is translated, and the request returns at once.
Replies use the reply token whenever LINE still takes it, else push with an X-Line-Retry-Key;
each push logs and counts why (no token, token expired, token already used). Results are Flex
bubbles (bot/channels/flex.py), a set's results one Flex carousel; quick replies carry icons.
Photos sent at once arrive as separate image events sharing an `imageSet` {id, index, total}
(Messaging API reference, "Image" message event; LINE for Android 11.15 and older omits index
and total): they become PhotoReceived with set_id/set_index/set_total.
"""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote

import urllib3
from flask import Blueprint, abort, request
from linebot.v3 import WebhookParser
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    ImageMessage,
    MessagingApi,
    PostbackAction,
    PushMessageRequest,
    QuickReply,
    QuickReplyItem,
    ReplyMessageRequest,
    ShowLoadingAnimationRequest,
    TextMessage,
)
from linebot.v3.webhooks import (
    FollowEvent,
    ImageMessageContent,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
)

from bot.channels.base import AcceptEvents, Delivery, DeliveryLog, SendError
from bot.channels.flex import MAX_CAROUSEL_BUBBLES, card_message, carousel_message
from bot.events import ChoiceMade, Event, Followed, ImageSource, PhotoReceived, TextReceived, Unsupported
from bot.fetch import fetch_url
from bot.replies import Card, Carousel, Choice, Image, Reply
from settings import Settings

logger = logging.getLogger(__name__)

# LINE documents that a reply token must be used within one minute of the webhook and that later
# use is not guaranteed. Older tokens are still tried (LINE often takes them, and replies are
# free, pushes are billed); the minute only tells "already used" from "expired" in the logs.
REPLY_TOKEN_GUARANTEED_S = 60
MAX_MESSAGES_PER_CALL = 5
MAX_QUICK_REPLIES = 13
LABEL_LIMIT = 20
PUSH_ATTEMPTS = 3
REPLY_ATTEMPTS = 2  # a timed-out reply is asked once more with the same (single-use) token
LINE_DATA_API = "https://api-data.line.me"  # content downloads live on their own host


class LineChannel:
    name = "line"
    max_carousel_cards = MAX_CAROUSEL_BUBBLES

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.parser = WebhookParser(settings.line_channel_secret)
        options = {"access_token": settings.line_channel_access_token}
        if settings.line_api_base_url:
            # One base URL for every call, content downloads included: a platform double in tests.
            options["host"] = settings.line_api_base_url
        self.configuration = Configuration(**options)
        # urllib3 would retry 3 times on its own; our own loops decide retries (one at most here).
        self.configuration.retries = 1
        self.timeout_s = settings.platform_timeout_s  # every LINE API call: a stalled API costs this, not minutes
        self.content_base = settings.line_api_base_url or LINE_DATA_API

    # --- inbound ------------------------------------------------------------------------------
    def blueprint(self, accept: AcceptEvents) -> Blueprint:
        blueprint = Blueprint("line", __name__)

        @blueprint.post("/callback/line")
        def callback():
            signature = request.headers.get("X-Line-Signature", "")
            body = request.get_data(as_text=True)
            if not signature or not self.settings.line_channel_secret:
                abort(400, "missing X-Line-Signature")
            try:
                platform_events = self.parser.parse(body, signature)
            except InvalidSignatureError:
                logger.warning("LINE webhook with a bad signature refused")
                abort(400, "invalid signature")
            except (ValueError, KeyError, TypeError) as error:
                abort(400, f"malformed body: {error}")
            events = [event for event in map(self.translate, platform_events) if event is not None]
            accept(events)
            return "OK"

        return blueprint

    def translate(self, event) -> Event | None:
        """A line-bot-sdk webhook event -> our event (None for what we ignore, e.g. unfollow)."""
        source = getattr(event, "source", None)
        user_id = getattr(source, "user_id", None)
        if not user_id:
            return None
        common = dict(
            channel=self.name,
            user_id=user_id,
            event_id=event.webhook_event_id or f"{event.timestamp}-{user_id}",
            timestamp=event.timestamp / 1000.0,
            reply_token=getattr(event, "reply_token", None),
        )
        if isinstance(event, MessageEvent):
            message = event.message
            if isinstance(message, ImageMessageContent):
                provider = message.content_provider
                image_set = message.image_set
                if image_set is not None and image_set.id:
                    common.update(set_id=image_set.id, set_index=image_set.index or 0, set_total=image_set.total or 0)
                if provider is not None and provider.type == "external" and provider.original_content_url:
                    return PhotoReceived(**common, source=ImageSource("url", provider.original_content_url))
                return PhotoReceived(**common, source=ImageSource("line_content", message.id))
            if isinstance(message, TextMessageContent):
                return TextReceived(**common, text=message.text)
            return Unsupported(**common, kind=getattr(message, "type", "unknown"))
        if isinstance(event, PostbackEvent):
            return ChoiceMade(**common, data=event.postback.data)
        if isinstance(event, FollowEvent):
            return Followed(**common)
        return None

    def fetch_image(self, source: ImageSource) -> bytes:
        if source.kind == "url":
            return fetch_url(source.ref, self.settings.max_image_bytes, self.settings.fetch_timeout_s,
                             self.settings.fetch_allowlist)
        # The content endpoint through our own fetch helper, not the SDK's blob API: that one reads
        # the whole body before any size check and retries on its own (4 x the timeout).
        url = f"{self.content_base}/v2/bot/message/{quote(source.ref, safe='')}/content"
        return fetch_url(url, self.settings.max_image_bytes, self.settings.fetch_timeout_s,
                         headers={"Authorization": f"Bearer {self.settings.line_channel_access_token}"},
                         trusted=True)

    # --- outbound -------------------------------------------------------------------------------
    def start_loading(self, event: Event) -> None:
        try:
            with ApiClient(self.configuration) as client:
                MessagingApi(client).show_loading_animation(
                    ShowLoadingAnimationRequest(chat_id=event.user_id, loading_seconds=20),
                    _request_timeout=self.timeout_s)
        except Exception as error:  # a missing spinner must never cost the user their cutout
            logger.info("LINE loading animation failed: %s", error)

    def can_send(self, event: Event) -> bool:
        return True

    def send(self, event: Event, replies: list[Reply], retry_key: str, log: DeliveryLog) -> Delivery:
        messages = [to_line_message(reply) for reply in replies][:MAX_MESSAGES_PER_CALL]
        with ApiClient(self.configuration) as client:
            api = MessagingApi(client)
            delivery = self._reply(api, event, messages, log)
            if delivery.via == "push":
                self._push(api, event.user_id, messages, retry_key)
            return delivery

    def _reply(self, api: MessagingApi, event: Event, messages: list, log: DeliveryLog) -> Delivery:
        """Answer with the reply token whenever LINE still takes it. Returns how the answer went
        (or went earlier) out; via "push" means the caller must push, the reason says why.

        LINE's reply API has no retry key, but the token itself is single-use: resending with the
        same token can never deliver twice. So a reply that may have gone out (a timeout here, or a
        process killed while LINE was answering) is simply sent again: 200 means the first never
        arrived, "invalid reply token" means it did (or, past LINE's guaranteed minute, maybe did:
        then it counts as delivered rather than risk a second copy; see docs/architecture.md).
        """
        if log.get("reply_outcome"):  # delivered by an earlier attempt that died before finishing the job
            return Delivery("reply", "delivered_earlier")
        if not event.reply_token:
            logger.info("LINE event %s has no reply token; pushing (counts against the monthly quota)",
                        event.event_id)
            return Delivery("push", "no_token")
        if log.get("reply_refused", False):
            return Delivery("push", log.get("push_reason", "token_expired"))
        attempted = log.get("reply_attempted", False)
        log.record(reply_attempted=True)  # durable before the call: a restart must know it may be out
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            try:
                api.reply_message(ReplyMessageRequest(reply_token=event.reply_token, messages=messages),
                                  _request_timeout=self.timeout_s)
                log.record(reply_outcome="sent")
                return Delivery("reply")
            except urllib3.exceptions.HTTPError as error:  # timed out or cut off: LINE may have it
                if attempt == REPLY_ATTEMPTS:
                    raise SendError(f"LINE reply failed: {type(error).__name__}") from error
                attempted = True  # the same token again: it cannot deliver twice
            except ApiException as error:
                if error.status != 400:
                    raise SendError(f"LINE reply failed: HTTP {error.status}") from error
                if not _is_reply_token_error(error):  # our messages are wrong: a push would fail alike
                    raise SendError(f"LINE refused the reply: {_line_error_message(error)}") from error
                age = time.time() - event.timestamp
                if attempted:  # the token was spent by our earlier attempt (or, past the minute, maybe)
                    fresh = age < REPLY_TOKEN_GUARANTEED_S
                    log.record(reply_outcome="sent_before" if fresh else "maybe_sent")
                    if fresh:
                        logger.info("LINE reply to %s had already been delivered", event.user_id)
                    else:
                        logger.warning("LINE reply to %s may have been sent before a restart and its token is "
                                       "%.0f s old; not pushing a second copy", event.user_id, age)
                    return Delivery("reply", "delivered_earlier" if fresh else "maybe_delivered")
                reason = "token_expired" if age >= REPLY_TOKEN_GUARANTEED_S else "token_used"
                log.record(reply_refused=True, push_reason=reason)  # definitive: nothing went out
                if reason == "token_expired":
                    logger.warning("LINE reply token expired after %.0f s; pushing instead "
                                   "(counts against the monthly quota)", age)
                else:
                    logger.warning("LINE reply token already used (refused %.0f s after the event); pushing "
                                   "instead (counts against the monthly quota)", age)
                return Delivery("push", reason)
        raise SendError("LINE reply failed")  # not reached: the loop returns or raises

    def _push(self, api: MessagingApi, user_id: str, messages: list, retry_key: str) -> None:
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            try:
                api.push_message(PushMessageRequest(to=user_id, messages=messages), x_line_retry_key=retry_key,
                                 _request_timeout=self.timeout_s)
                return
            except urllib3.exceptions.HTTPError as error:  # the retry key makes trying again safe
                if attempt == PUSH_ATTEMPTS:
                    raise SendError(f"LINE push failed: {type(error).__name__}") from error
                time.sleep(0.5 * 2**attempt)
                continue
            except ApiException as error:
                if error.status == 409:  # this retry key was accepted before: already delivered
                    logger.info("LINE push %s already accepted (409)", retry_key)
                    return
                if error.status not in (429, 500, 502, 503, 504) or attempt == PUSH_ATTEMPTS:
                    raise SendError(f"LINE push failed: HTTP {error.status}") from error
                time.sleep(0.5 * 2**attempt)


def _line_error_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        return ""


def _is_reply_token_error(error: ApiException) -> bool:
    """LINE's 400 for a used or expired token says "Invalid reply token"; other 400s are ours."""
    message = _line_error_message(error).lower()
    return not message or "reply token" in message


def quick_reply(choices: tuple[Choice, ...]) -> QuickReply | None:
    """Quick-reply buttons; a choice's icon is shown when it is an HTTPS URL (LINE takes no other)."""
    if not choices:
        return None
    items = [
        QuickReplyItem(action=PostbackAction(label=choice.label[:LABEL_LIMIT], data=choice.data,
                                             display_text=choice.label),
                       image_url=choice.icon_url if choice.icon_url.startswith("https://") else None)
        for choice in choices[:MAX_QUICK_REPLIES]
    ]
    return QuickReply(items=items)


def to_line_message(reply: Reply):
    if isinstance(reply, Card):
        return card_message(reply, quick_reply(reply.choices))
    if isinstance(reply, Carousel):
        return carousel_message(reply, quick_reply(reply.choices))
    if isinstance(reply, Image):
        return ImageMessage(original_content_url=reply.url, preview_image_url=reply.preview_url,
                            quick_reply=quick_reply(reply.choices))
    return TextMessage(text=reply.text[:5000], quick_reply=quick_reply(reply.choices))
