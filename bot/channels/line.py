"""LINE Messaging API channel, through line-bot-sdk v3.

POST /callback/line: the raw body is verified against X-Line-Signature (400 and nothing processed
when it does not match), every event of the batch is translated, and the request returns at once.
Replies use the reply token while it is fresh, else push with an X-Line-Retry-Key.
"""
from __future__ import annotations

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

from bot.channels.base import AcceptEvents, DeliveryLog, SendError
from bot.events import ChoiceMade, Event, Followed, ImageSource, PhotoReceived, TextReceived, Unsupported
from bot.fetch import fetch_url
from bot.replies import Choice, Image, Reply, Text
from settings import Settings

logger = logging.getLogger(__name__)

REPLY_TOKEN_FRESH_S = 50  # LINE reply tokens last about a minute; leave a margin
MAX_MESSAGES_PER_CALL = 5
MAX_QUICK_REPLIES = 13
LABEL_LIMIT = 20
PUSH_ATTEMPTS = 3
REPLY_ATTEMPTS = 2  # a timed-out reply is asked once more with the same (single-use) token
LINE_DATA_API = "https://api-data.line.me"  # content downloads live on their own host


class LineChannel:
    name = "line"

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

    def send(self, event: Event, replies: list[Reply], retry_key: str, log: DeliveryLog) -> None:
        messages = [to_line_message(reply) for reply in replies][:MAX_MESSAGES_PER_CALL]
        with ApiClient(self.configuration) as client:
            api = MessagingApi(client)
            if not self._reply(api, event, messages, log):
                self._push(api, event.user_id, messages, retry_key)

    def _reply(self, api: MessagingApi, event: Event, messages: list, log: DeliveryLog) -> bool:
        """Answer with the reply token when it can be used; True once the reply is (or was) delivered.

        LINE's reply API has no retry key, but the token itself is single-use: resending with the
        same token can never deliver twice. So a reply that may have gone out (a timeout here, or a
        process killed while LINE was answering) is simply sent again while the token is fresh:
        200 means the first never arrived, "invalid reply token" means it did. Once the token is
        too old to ask, a maybe-sent reply counts as delivered (see docs/architecture.md).
        """
        if log.get("reply_outcome"):  # delivered by an earlier attempt that died before finishing the job
            return True
        if not event.reply_token or log.get("reply_refused", False):
            return False
        age = time.time() - event.timestamp
        attempted = log.get("reply_attempted", False)
        if age >= REPLY_TOKEN_FRESH_S:
            if attempted:
                log.record(reply_outcome="maybe_sent")
                logger.warning("LINE reply to %s may have been sent before a restart and its token is %.0f s "
                               "old; not pushing a second copy", event.user_id, age)
                return True
            logger.info("LINE reply token %.0f s old; pushing instead", age)
            return False
        log.record(reply_attempted=True)  # durable before the call: a restart must know it may be out
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            try:
                api.reply_message(ReplyMessageRequest(reply_token=event.reply_token, messages=messages),
                                  _request_timeout=self.timeout_s)
                log.record(reply_outcome="sent")
                return True
            except urllib3.exceptions.HTTPError as error:  # timed out or cut off: LINE may have it
                if attempt == REPLY_ATTEMPTS:
                    raise SendError(f"LINE reply failed: {type(error).__name__}") from error
                attempted = True  # the same token again: it cannot deliver twice
            except ApiException as error:
                if error.status == 400 and attempted:  # the token was spent by our earlier attempt
                    log.record(reply_outcome="sent_before")
                    logger.info("LINE reply to %s had already been delivered", event.user_id)
                    return True
                if error.status != 400:
                    raise SendError(f"LINE reply failed: HTTP {error.status}") from error
                log.record(reply_refused=True)  # definitive: nothing went out, push from now on
                logger.warning("LINE reply token refused (400); falling back to push")
                return False
        return False

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


def quick_reply(choices: tuple[Choice, ...]) -> QuickReply | None:
    if not choices:
        return None
    items = [
        QuickReplyItem(action=PostbackAction(label=choice.label[:LABEL_LIMIT], data=choice.data,
                                             display_text=choice.label))
        for choice in choices[:MAX_QUICK_REPLIES]
    ]
    return QuickReply(items=items)


def to_line_message(reply: Reply):
    if isinstance(reply, Image):
        return ImageMessage(original_content_url=reply.url, preview_image_url=reply.preview_url,
                            quick_reply=quick_reply(reply.choices))
    return TextMessage(text=reply.text[:5000], quick_reply=quick_reply(reply.choices))
