"""A Card as a LINE Flex Message bubble (Messaging API reference, "Flex Message" / "Bubble").

Hero: the card's picture at its own aspect ratio ("{w}:{h}", height at most 3 x width), whole
("fit"), tap = the full-size file. Body: the title and subtitle. Footer: the first button full
width (primary), the others side by side; a cutout's Edit link sits in the body, under the text.
Limits kept here: action labels <= 20 characters,
postback data <= 300, URIs <= 1000, image URLs <= 2000, altText <= 1500. The dict is parsed by
line-bot-sdk's own models (FlexMessage.from_dict), so a misspelt type or enum fails at once.
A Carousel is a Flex carousel: at most 12 bubbles (LINE's limit) and 50 KB of JSON; every bubble
gets the same hero shape (LINE sizes a carousel's bubbles alike; mixed shapes look ragged).
"""
from __future__ import annotations

import json
from dataclasses import replace
from math import gcd

from linebot.v3.messaging import FlexBubble, FlexCarousel, FlexMessage, QuickReply

from bot.replies import Card, Carousel, Choice, Link, Picture

LABEL_LIMIT = 20
ALT_TEXT_LIMIT = 1500
DATA_LIMIT = 300
URI_LIMIT = 1000
PRIMARY_COLOUR = "#05803A"  # a dark LINE-like green: white text on it is 5:1 (LINE's #06C755 is 2.3:1)
PICTURE_BACKGROUND = "#F2F2F2"
MAX_CAROUSEL_BUBBLES = 12
CAROUSEL_MAX_BYTES = 50_000


def aspect_ratio(width: int, height: int) -> str:
    """'{width}:{height}', each 1..100000 and the height at most three times the width (LINE's rule)."""
    width, height = max(1, width), max(1, height)
    if height > 3 * width:
        return "1:3"
    divisor = gcd(width, height)
    width, height = width // divisor, height // divisor
    while max(width, height) > 100000:
        width, height = max(1, width // 10), max(1, height // 10)
    return f"{width}:{height}"


def action(button: Choice | Link) -> dict:
    label = button.label[:LABEL_LIMIT]
    if isinstance(button, Link):
        return {"type": "uri", "label": label, "uri": button.url[:URI_LIMIT]}
    return {"type": "postback", "label": label, "data": button.data[:DATA_LIMIT], "displayText": button.label}


def button(item: Choice | Link, primary: bool) -> dict:
    component = {"type": "button", "action": action(item), "height": "sm",
                 "style": "primary" if primary else "secondary"}
    if primary:
        component["color"] = PRIMARY_COLOUR
    return component


def hero(picture: Picture, label: str) -> dict:
    component = {"type": "image", "url": picture.url, "size": "full",
                 "aspectRatio": aspect_ratio(picture.width, picture.height), "aspectMode": "fit",
                 "backgroundColor": PICTURE_BACKGROUND}
    if picture.open_url:
        component["action"] = {"type": "uri", "label": label[:LABEL_LIMIT], "uri": picture.open_url[:URI_LIMIT]}
    return component


def bubble(card: Card) -> dict:
    body = {"type": "box", "layout": "vertical", "spacing": "sm", "contents": [
        {"type": "text", "text": card.title, "weight": "bold", "size": "lg", "wrap": True},
        {"type": "text", "text": card.subtitle, "size": "sm", "color": "#555555", "wrap": True},
    ]}
    if card.edit is not None:  # under the text, apart from the footer's three buttons
        body["contents"].append({"type": "button", "action": action(card.edit), "height": "sm", "style": "link",
                                 "color": PRIMARY_COLOUR})
    buttons = list(card.buttons[:3])
    # A result's first button (Download) is the main one; a menu's, only when it is a download (a set's ZIP).
    if buttons and (card.picture is not None or isinstance(buttons[0], Link)):
        rest = [button(item, primary=False) for item in buttons[1:]]
        footer_contents = [button(buttons[0], primary=True)]
        if rest:
            footer_contents.append({"type": "box", "layout": "horizontal", "spacing": "sm", "contents": rest})
    else:
        footer_contents = [button(item, primary=False) for item in buttons]
    contents: dict = {"type": "bubble"}
    if card.picture is not None:
        first_link = next((item for item in buttons if isinstance(item, Link)), None)
        contents["hero"] = hero(card.picture, first_link.label if first_link else card.title)
    contents["body"] = body
    if footer_contents:
        contents["footer"] = {"type": "box", "layout": "vertical", "spacing": "sm", "contents": footer_contents}
    return contents


def card_message(card: Card, quick_reply: QuickReply | None = None) -> FlexMessage:
    """The card as the SDK's FlexMessage (the bubble validated by the SDK's models while parsed)."""
    return FlexMessage(alt_text=(card.alt_text or card.title)[:ALT_TEXT_LIMIT],
                       contents=FlexBubble.from_dict(bubble(card)), quick_reply=quick_reply)


def carousel_message(carousel: Carousel, quick_reply: QuickReply | None = None) -> FlexMessage:
    """Up to 12 cards side by side; the heroes share the first card's shape ("fit": nothing is cut)."""
    cards = carousel.cards[:MAX_CAROUSEL_BUBBLES]
    first = next((card.picture for card in cards if card.picture is not None), None)
    bubbles = [bubble(replace(card, picture=replace(card.picture, width=first.width, height=first.height))
                      if card.picture is not None and first is not None else card) for card in cards]
    contents = {"type": "carousel", "contents": bubbles}
    while len(json.dumps(contents, ensure_ascii=False).encode()) > CAROUSEL_MAX_BYTES and len(bubbles) > 1:
        bubbles.pop()  # never reached with our short URLs (~1.5 kB a bubble); LINE refuses the whole message
    return FlexMessage(alt_text=(carousel.alt_text or cards[0].title)[:ALT_TEXT_LIMIT],
                       contents=FlexCarousel.from_dict(contents), quick_reply=quick_reply)
