"""The editor in a real browser (Debian's chromium, headless, via selenium) on a phone, opened from
a LINE cutout reply's Edit link: gunicorn as the Procfile runs it, the LINE double in this process.

A photo with two objects goes in through the signed webhook; the card's 修正去背 link opens the
editor at 390x844 with touch emulation; real touch events (CDP Input.dispatchTouchEvent, which
the page sees as pointer events) tap the smaller object away and paint an erase stroke; Save
sends the corrected cutout back to the chat as a LINE push. Also: keyboard alone, refused links.
"""
from __future__ import annotations

import io
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from PIL import Image
from scipy import ndimage

from bot.results import object_parts
from tests.channel_drivers import flat_line_message
from tests.conftest import LINE_SECRET, LINE_TOKEN, line_body, line_signature, tampered
from tests.doubles.line_platform import LinePlatformDouble
from tests.gunicorn_server import GunicornServer
from tests.web.test_browser import PHONE, artefacts, assert_tab_reaches_every_control, browser, shot, wait_for  # noqa: F401
from tests.web.test_editor import two_objects_jpeg

USER = "Ubrowser0editor"


@pytest.fixture(scope="module")
def line_double():
    double = LinePlatformDouble(LINE_TOKEN).start()
    yield double
    double.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, line_double, real_pipeline):
    gunicorn = GunicornServer({"CUTOUT_DATA_DIR": str(tmp_path_factory.mktemp("var")), "LINE_CHANNEL_SECRET": LINE_SECRET,
                               "LINE_CHANNEL_ACCESS_TOKEN": LINE_TOKEN, "LINE_API_BASE_URL": line_double.base_url})
    gunicorn.env["PUBLIC_BASE_URL"] = gunicorn.base_url
    gunicorn.start()
    yield gunicorn
    gunicorn.stop()


def delivered(double, count: int) -> list[dict]:
    double.wait_for(lambda rs: sum(len(r.body["messages"]) for r in rs
                                   if r.path.endswith(("/reply", "/push")) and r.status == 200) >= count, 90)
    return [message for record in double.delivered() for message in record.body["messages"]]


@pytest.fixture(scope="module")
def edit_link(server, line_double) -> str:
    """Send the photo as LINE would; the link behind the cutout card's 修正去背."""
    message_id = str(time.time_ns())
    line_double.add_content(message_id, two_objects_jpeg())
    body, event = line_body("image_message.json", **{"message.id": message_id, "source.userId": USER})
    line_double.valid_reply_tokens.add(event["replyToken"])
    answer = requests.post(server.base_url + "/callback/line", data=body, timeout=10,
                           headers={"X-Line-Signature": line_signature(body), "Content-Type": "application/json"})
    assert answer.status_code == 200
    [card] = delivered(line_double, 1)
    [button] = [c for c in card["contents"]["body"]["contents"] if c["type"] == "button"]
    assert button["action"]["label"] == "修正去背"
    return button["action"]["uri"]


def as_phone(driver) -> None:
    width, height = PHONE
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})


def open_editor(driver, url: str) -> None:
    as_phone(driver)
    driver.get(url)
    wait_for(driver, "return document.body.dataset.state === 'ready' || document.body.dataset.state === 'failed'", 30)
    assert driver.execute_script("return document.body.dataset.state") == "ready"


def screen_point(driver, x: float, y: float) -> tuple[float, float]:
    """Where grid pixel (x, y) of the picture is on the screen now (zoom and pan included)."""
    return tuple(driver.execute_script("""
        const r = document.getElementById("cutout").getBoundingClientRect(), c = document.getElementById("cutout");
        return [r.left + (arguments[0] + 0.5) * r.width / c.width, r.top + (arguments[1] + 0.5) * r.height / c.height];
    """, float(x), float(y)))


def touch(driver, kind: str, points: list[tuple[float, float]]) -> None:
    driver.execute_cdp_cmd("Input.dispatchTouchEvent", {
        "type": kind, "touchPoints": [{"x": x, "y": y, "id": index} for index, (x, y) in enumerate(points)]})


def previews(driver) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.previews || 0)"))


def shown_alpha(driver, x: int, y: int) -> int:
    return driver.execute_script(
        "return document.getElementById('cutout').getContext('2d').getImageData(arguments[0], arguments[1], 1, 1).data[3]",
        int(x), int(y))


def wait_preview(driver, count: int) -> None:
    wait_for(driver, f"return Number(document.body.dataset.previews || 0) >= {count} "
                     "&& document.body.dataset.state === 'ready'", 20)


def test_tap_erase_and_save_from_a_line_reply_on_a_phone(server, browser, line_double, edit_link, artefacts):
    started = time.monotonic()
    assert edit_link.startswith(server.base_url + "/edit/")
    open_editor(browser, edit_link)
    shot(browser, artefacts, "editor-phone")
    # Reads well at 390 px: nothing wider than the screen, every control on it, Save big enough to hit.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    for element_id in ("save", "undo", "redo", "compare", "fit", "main-only", "brush"):
        box = browser.execute_script("const r = document.getElementById(arguments[0]).getBoundingClientRect();"
                                     "return [r.left, r.right, r.bottom, r.height]", element_id)
        assert box[0] >= 0 and box[1] <= PHONE[0] and box[2] <= PHONE[1], (element_id, box)
    assert browser.find_element("id", "main-only").is_displayed()  # two objects: the quick fix is offered
    assert browser.find_element("id", "save").size["height"] >= 44
    assert not browser.find_element("id", "save").is_enabled()  # nothing to save before a change
    assert not browser.find_element("id", "keys").is_displayed()  # no keyboard shortcuts on a touch phone
    assert not browser.find_element("id", "back").is_displayed()  # from a chat: no web page to go back to

    # The two objects, as the page shows them (the grid's alpha before any mark).
    token_path = urlsplit(edit_link).path
    before = np.asarray(Image.open(io.BytesIO(requests.post(server.base_url + token_path + "/alpha.png",
                                                            json={"marks": []}, timeout=20).content)))
    labels, parts, _ = object_parts(before)
    main, other = labels == parts[0], labels == parts[1]
    depth = ndimage.distance_transform_edt(other)
    tap_y, tap_x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    assert shown_alpha(browser, int(tap_x), int(tap_y)) > 128

    # Select mode: a finger taps the smaller object; it goes.
    point = screen_point(browser, tap_x, tap_y)
    touch(browser, "touchStart", [point])
    touch(browser, "touchEnd", [])
    wait_preview(browser, 1)
    assert shown_alpha(browser, int(tap_x), int(tap_y)) == 0
    assert browser.find_element("id", "undo").is_enabled() and browser.find_element("id", "save").is_enabled()
    assert not browser.find_element("id", "cursor").is_displayed()  # the keyboard's ring is not a finger's

    # Erase mode (tapped like a person does), then one stroke across the main object's middle.
    tap_on(browser, '#modes [data-mode="erase"]')
    wait_for(browser, "return document.querySelector('#modes [data-mode=\"erase\"]')"
                      ".getAttribute('aria-pressed') === 'true'", 5)
    rows, columns = np.nonzero(main)
    strip_y = int(np.median(rows))
    touch(browser, "touchStart", [screen_point(browser, int(columns.min()) - 4, strip_y)])
    for x in np.linspace(columns.min() - 4, columns.max() + 4, 12)[1:]:
        touch(browser, "touchMove", [screen_point(browser, x, strip_y)])
    touch(browser, "touchEnd", [])
    wait_preview(browser, 2)
    middle = [int(x) for x in np.linspace(columns.min(), columns.max(), 9) if main[strip_y, int(x)]]
    assert middle and all(shown_alpha(browser, x, strip_y) == 0 for x in middle)
    kept = np.argwhere(main & (np.abs(np.arange(main.shape[0]) - strip_y) > 15)[:, None])[::97]
    assert np.mean([shown_alpha(browser, int(x), int(y)) > 128 for y, x in kept]) > 0.8  # the rest stays
    shot(browser, artefacts, "editor-phone-edited")

    # Save: the page says so, and the corrected cutout arrives in the chat as a push.
    tap_on(browser, "#save")
    wait_for(browser, "return document.body.dataset.state === 'saved'", 30)
    assert "聊天室" in browser.find_element("id", "message").text
    pushed = flat_line_message(delivered(line_double, 2)[1])
    [push] = [r for r in line_double.delivered() if r.path.endswith("/push")]
    assert push.body["to"] == USER and pushed["title"] == "修正好了！"
    corrected = np.asarray(Image.open(io.BytesIO(requests.get(pushed["image"], timeout=20).content)).getchannel("A"))
    assert corrected.shape == other.shape
    assert (corrected[other] > 128).mean() < 0.05 and (corrected[strip_y][main[strip_y]] > 128).sum() == 0
    assert (corrected[main] > 128).mean() > 0.6
    assert not browser.find_element("id", "save").is_enabled()  # saved: nothing new to save

    # 修正前 shows the first cutout (the dropped object back), pressed again the edit.
    tap_on(browser, "#compare")
    assert browser.find_element("id", "compare").get_attribute("aria-pressed") == "true"
    assert shown_alpha(browser, int(tap_x), int(tap_y)) > 128
    tap_on(browser, "#compare")
    assert shown_alpha(browser, int(tap_x), int(tap_y)) == 0
    # Two fingers spreading zoom in around them, and leave no mark.
    marks_before, scale_before = previews(browser), stage_scale(browser)
    centre = screen_point(browser, tap_x, tap_y)
    touch(browser, "touchStart", [(centre[0] - 30, centre[1]), (centre[0] + 30, centre[1])])
    for spread in (45, 60, 75, 90):
        touch(browser, "touchMove", [(centre[0] - spread, centre[1]), (centre[0] + spread, centre[1])])
    touch(browser, "touchEnd", [])
    assert stage_scale(browser) > 2.5 * scale_before
    assert abs(screen_point(browser, tap_x, tap_y)[0] - centre[0]) < 20  # the pinched spot stays under the fingers
    time.sleep(0.3)
    assert previews(browser) == marks_before and browser.execute_script("return document.body.dataset.state") == "saved"
    shot(browser, artefacts, "editor-phone-zoomed")
    # An edit made while 修正前 shows the first cutout turns it off: the edit is seen where it was made.
    tap_on(browser, "#compare")
    tap_on(browser, '#modes [data-mode="select"]')
    touch(browser, "touchStart", [screen_point(browser, tap_x, tap_y)])
    touch(browser, "touchEnd", [])
    wait_preview(browser, marks_before + 1)
    assert browser.find_element("id", "compare").get_attribute("aria-pressed") == "false"
    assert shown_alpha(browser, int(tap_x), int(tap_y)) > 128  # tapped back in, and shown
    assert time.monotonic() - started < 60


def tap_on(driver, selector: str) -> None:
    """A finger's tap on the middle of the element (a touch, as on a phone; not a click)."""
    box = driver.execute_script("const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                                "return [r.left + r.width / 2, r.top + r.height / 2]", selector)
    touch(driver, "touchStart", [tuple(box)])
    touch(driver, "touchEnd", [])


def stage_scale(driver) -> float:
    return driver.execute_script("return new DOMMatrix(getComputedStyle(document.getElementById('stage')).transform).a")


def test_keyboard_alone_reaches_every_control_and_edits(server, browser, edit_link):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_editor(browser, edit_link)
    assert_tab_reaches_every_control(browser)
    # Mode keys, then a tap with Enter at the cursor the arrow keys moved.
    viewport = browser.find_element("id", "viewport")
    browser.execute_script("arguments[0].focus()", viewport)
    assert browser.find_element("id", "cursor").is_displayed()
    ActionChains(browser).send_keys("e").perform()
    assert browser.find_element("css selector", '#modes [data-mode="erase"]').get_attribute("aria-pressed") == "true"
    ActionChains(browser).send_keys("s").perform()
    assert browser.find_element("css selector", '#modes [data-mode="select"]').get_attribute("aria-pressed") == "true"
    count = previews(browser)
    ActionChains(browser).send_keys(Keys.ARROW_LEFT, Keys.ENTER).perform()
    wait_preview(browser, count + 1)
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    wait_preview(browser, count + 2)  # undone: the list went back to the server without the tap


def test_expired_and_tampered_links_get_a_page_in_the_users_language(server, browser, edit_link):
    """An altered link: whose it was is unknown, so the phone's language (this chromium: English),
    or ?lang=; an expired one (signed 8 days ago, see tests/web/test_editor.py): the chat user's."""
    token = urlsplit(edit_link).path.rsplit("/", 1)[1]
    as_phone(browser)  # on its own too, not only after the tests that opened the editor
    open_page = lambda url: (browser.get(url), browser.find_element("tag name", "body"))[1]  # noqa: E731
    body = open_page(f"{server.base_url}/edit/{tampered(token)}")
    language = browser.execute_script("return navigator.language")
    assert body.get_attribute("data-refused") == "invalid"
    assert ("This link doesn't work" if language.startswith("en") else "這個連結無法使用") in body.text
    body = open_page(f"{server.base_url}/edit/{tampered(token)}?lang=zh-TW")
    assert body.get_attribute("data-refused") == "invalid" and "這個連結無法使用" in body.text
    assert body.size["width"] <= PHONE[0]
