"""The web page in a real browser (Debian's chromium, headless, via selenium) against gunicorn.

One server and one browser for the module; each test loads the page afresh at a desktop
(1366x900) or phone (390x844) viewport and drives it the way people do: a file dropped anywhere
on the page, a pasted image, a sample photo, a HEIC, a 25 MB file, a photo with nothing in it,
the keyboard alone. Screenshots go to $CUTOUT_TEST_ARTEFACTS (default: a temporary folder,
printed at the end of the module).
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import ROOT, loud_skip, shared_image
from tests.gunicorn_server import GunicornServer

DESKTOP, PHONE = (1366, 900), (390, 844)
SIZES = {"desktop": DESKTOP, "phone": PHONE}
WAIT_S = 90


@pytest.fixture(scope="module")
def artefacts(request, tmp_path_factory) -> Path:
    folder = Path(os.environ.get("CUTOUT_TEST_ARTEFACTS") or tmp_path_factory.mktemp("browser-artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    shots = len(list(folder.glob("*.png")))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if shots and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when pytest captures output
            print(f"\nbrowser screenshots ({shots}): {folder}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, real_pipeline):
    gunicorn = GunicornServer({"CUTOUT_DATA_DIR": str(tmp_path_factory.mktemp("var")), "CUTOUT_PAGE_RATE_LIMIT": "200"})
    gunicorn.env["PUBLIC_BASE_URL"] = gunicorn.base_url  # link-preview tags point at this server
    gunicorn.start()
    yield gunicorn
    gunicorn.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        loud_skip("chromium/chromedriver not installed (scripts/setup.sh --test installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--user-data-dir={tmp_path_factory.mktemp('profile')}"):
        options.add_argument(flag)
    service = Service(chromedriver, env=with_chinese_font(tmp_path_factory.mktemp("fonts")))
    driver = webdriver.Chrome(service=service, options=options)
    yield driver
    driver.quit()


def with_chinese_font(folder: Path) -> dict[str, str]:
    """chromium's environment with the Noto Sans TC that setup fetches for the posters: Debian's
    headless chromium has no CJK font, so the page's default language (zh-TW) would be laid out and
    photographed as empty boxes, unlike on any phone."""
    from models.fetch import default_cache_dir

    env, font = dict(os.environ), default_cache_dir() / "NotoSansTC_700Bold.ttf"
    if not font.exists():
        return env
    (folder / "fonts").mkdir()
    (folder / "fonts" / font.name).symlink_to(font)
    config = folder / "fonts.conf"
    config.write_text('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>'
                      '<include ignore_missing="yes">/etc/fonts/fonts.conf</include>'
                      f'<dir>{folder / "fonts"}</dir><cachedir>{folder / "cache"}</cachedir></fontconfig>\n')
    env["FONTCONFIG_FILE"] = str(config)
    return env


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Small test photos on disk (the file input takes paths): the troll portrait, a HEIC, blank, 25 MB."""
    folder = tmp_path_factory.mktemp("photos")
    troll = Image.open(shared_image("GT04")).convert("RGB")
    troll.thumbnail((320, 320))
    troll.save(folder / "troll.jpg", "JPEG", quality=90)
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    troll.save(folder / "IMG_0042.heic", "HEIF", quality=80)
    Image.new("RGB", (320, 240), (128, 128, 128)).save(folder / "blank.jpg", "JPEG")
    (folder / "huge.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(25 * 1024 * 1024))
    whole = (folder / "troll.jpg").read_bytes()
    (folder / "cut-short.jpg").write_bytes(whole[: len(whole) * 3 // 5])  # a transfer that broke off
    return {"troll": folder / "troll.jpg", "heic": folder / "IMG_0042.heic", "blank": folder / "blank.jpg",
            "huge": folder / "huge.jpg", "cut_short": folder / "cut-short.jpg"}


# --- helpers ------------------------------------------------------------------------------------
def open_page(driver, server, size: tuple[int, int], language: str = "zh-TW") -> None:
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == PHONE})
    driver.get(server.base_url + "/")
    if driver.execute_script("return localStorage.getItem('cutout-lang') || 'zh-TW'") != language:
        driver.execute_script("localStorage.setItem('cutout-lang', arguments[0])", "en" if language == "en" else "zh-TW")
        driver.get(server.base_url + "/")
    driver.execute_script("""
        window.__states = [document.body.dataset.state];
        window.__stateAt = {};
        new MutationObserver(() => {
          const state = document.body.dataset.state;
          if (window.__states[window.__states.length - 1] !== state) window.__states.push(state);
          window.__stateAt[state] ??= performance.now();
        }).observe(document.body, {attributes: true, attributeFilter: ["data-state"]});
        document.getElementById("thumb").addEventListener("load", () => { window.__thumbAt ??= performance.now(); });
    """)


def wait_for(driver, script: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script} (states {driver.execute_script('return window.__states')})")


def wait_state(driver, *states: str) -> str:
    return wait_for(driver, f"return {list(states)!r}.includes(document.body.dataset.state) && document.body.dataset.state")


def wait_done(driver) -> None:
    wait_for(driver, "return document.body.dataset.ready === '1' || document.body.dataset.state === 'failed'")
    state = driver.execute_script("return document.body.dataset.state")
    assert state == "done", driver.find_element("id", "error-text").text


MAKE_FILE = """
    const [b64, name, type] = arguments;
    const raw = atob(b64), bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, {type}));
"""


def jpeg_of(path: Path, side: int = 320) -> bytes:
    image = Image.open(path).convert("RGB")
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def download(server, driver, element_id: str) -> requests.Response:
    href = driver.find_element("id", element_id).get_attribute("href")
    assert href.startswith(server.base_url + "/page/jobs/"), href  # the server's file, not a data: URL
    response = requests.get(href, timeout=60)
    assert response.status_code == 200
    return response


def shot(driver, artefacts: Path, name: str) -> None:
    driver.save_screenshot(str(artefacts / f"{name}.png"))


def rect(driver, element_id: str) -> dict:
    return driver.execute_script("const r = document.getElementById(arguments[0]).getBoundingClientRect();"
                                 "return {left: r.left, top: r.top, right: r.right, bottom: r.bottom};", element_id)


def overlaps(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def assert_tab_reaches_every_control(driver) -> int:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    controls = driver.execute_script("""
        const visible = (el) => el.getClientRects().length > 0 && !el.closest("[hidden]")
          && getComputedStyle(el).visibility !== "hidden";
        const list = [...document.querySelectorAll("a[href], button, input, select, textarea, [tabindex]")]
          .filter((el) => !el.disabled && el.getAttribute("tabindex") !== "-1" && visible(el));
        list.forEach((el, i) => { el.dataset.tabCheck = String(i); });
        window.__focused = new Set();
        document.addEventListener("focusin", (e) => {
          if (e.target.dataset.tabCheck) window.__focused.add(e.target.dataset.tabCheck);
        });
        document.activeElement && document.activeElement.blur();
        window.scrollTo(0, 0);
        return list.map((el) => el.id || el.dataset.bg || el.dataset.sample || el.textContent.trim()
          || el.outerHTML.slice(0, 60));
    """)
    chain = ActionChains(driver)
    for _ in range(len(controls) + 2):
        chain.send_keys(Keys.TAB)
    chain.perform()
    reached = set(driver.execute_script("return [...window.__focused]"))
    missed = [name for index, name in enumerate(controls) if str(index) not in reached]
    assert not missed, f"not reachable with Tab: {missed}"
    return len(controls)


# --- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("size_name", ["desktop", "phone"])
def test_upload_area_headline_and_hint_are_visible_and_not_overlapped(server, browser, artefacts, size_name):
    open_page(browser, server, SIZES[size_name])
    shot(browser, artefacts, f"upload-{size_name}")
    viewport = browser.execute_script(
        "return {width: innerWidth, height: innerHeight, scroll: document.documentElement.scrollWidth}")
    assert viewport["scroll"] <= viewport["width"], "the page scrolls sideways"
    boxes = {name: rect(browser, name) for name in ("drop-title", "drop-hint", "choose", "url-form", "samples-label")}
    for name in ("drop-title", "drop-hint", "choose"):
        box = boxes[name]
        assert box["right"] - box["left"] > 50 and box["bottom"] - box["top"] > 10, (name, box)
        assert 0 <= box["top"] and box["bottom"] <= viewport["height"] and box["right"] <= viewport["width"], (name, box)
    names = list(boxes)
    for index, first in enumerate(names):
        for second in names[index + 1:]:
            assert not overlaps(boxes[first], boxes[second]), (first, second, boxes[first], boxes[second])
    # Nothing paints over the text: the element at points across each line is the text's own.
    for name in ("drop-title", "drop-hint"):
        hits = browser.execute_script("""
            const el = document.getElementById(arguments[0]), range = document.createRange();
            range.selectNodeContents(el);
            return [...range.getClientRects()].flatMap((r) => [0.1, 0.5, 0.9].map((f) => {
              const hit = document.elementFromPoint(r.left + r.width * f, r.top + r.height / 2);
              return hit === el || el.contains(hit);
            }));
        """, name)
        assert hits and all(hits), (name, hits)
    assert browser.find_element("id", "drop-title").text == "把照片拖到這裡，或點一下選擇照片"
    assert "HEIC" in browser.find_element("id", "drop-hint").text


@pytest.mark.parametrize("size_name", ["desktop", "phone"])
def test_every_control_of_the_upload_page_is_reachable_with_tab_and_enter_opens_the_picker(server, browser, size_name):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server, SIZES[size_name])
    assert assert_tab_reaches_every_control(browser) >= 7  # language, choose, URL field and button, 3 samples
    browser.execute_script("""
        window.__picker = 0;
        document.getElementById("file").addEventListener("click", (e) => { e.preventDefault(); window.__picker += 1; });
        document.getElementById("choose").focus();
    """)
    chooser = browser.find_element("id", "choose")
    chooser.send_keys(Keys.ENTER)
    chooser.send_keys(Keys.SPACE)
    assert browser.execute_script("return window.__picker") == 2


def test_a_photo_dropped_anywhere_is_shown_at_once_then_cut_out_with_its_stages(server, browser, artefacts, photos):
    open_page(browser, server, DESKTOP)
    prevented = browser.execute_script(MAKE_FILE + """
        const events = ["dragenter", "dragover", "drop"].map((type) => {
          const event = new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true});
          document.body.dispatchEvent(event);   // the page body, not the upload box
          return event.defaultPrevented;
        });
        return events;
    """, base64.b64encode(photos["troll"].read_bytes()).decode(), "troll.jpg", "image/jpeg")
    assert prevented == [True, True, True]  # the browser never opens the dropped file itself
    wait_done(browser)
    states = browser.execute_script("return window.__states")
    assert states[0] == "idle" and "uploading" in states and states[-1] == "done", states
    assert {"queued", "segmenting", "refining", "saving"} & set(states), states  # the server's own stages
    thumb = browser.execute_script("const t = document.getElementById('thumb');"
                                   "return [t.src, t.naturalWidth, window.__thumbAt < window.__stateAt.saving]")
    assert thumb[0].startswith("blob:") and thumb[1] == 320 and thumb[2]  # the upload itself, before the cutout was ready
    assert browser.find_element("id", "result-title").text.startswith("完成")
    shot(browser, artefacts, "result-desktop")

    response = download(server, browser, "download-png")
    assert 'filename=troll-cutout.png' in response.headers["Content-Disposition"]
    png = Image.open(io.BytesIO(response.content))
    assert png.mode == "RGBA" and png.size == Image.open(photos["troll"]).size
    alpha = np.asarray(png)[:, :, 3]
    assert (alpha == 0).mean() > 0.2 and (alpha == 255).mean() > 0.2
    jpg = download(server, browser, "download-jpg")
    assert jpg.headers["Content-Type"] == "image/jpeg" and "troll-cutout.jpg" in jpg.headers["Content-Disposition"]

    assert_tab_reaches_every_control(browser)  # the result's swatches, slider and downloads too
    browser.find_element("id", "lang").click()  # English without reloading
    assert browser.find_element("id", "download-png").text == "Download PNG"
    assert browser.find_element("id", "result-title").text.startswith("Done")


def test_the_edit_button_opens_the_editor_and_the_page_draws_what_was_saved(server, browser, artefacts, photos):
    open_page(browser, server, DESKTOP)
    browser.find_element("id", "file").send_keys(str(photos["troll"]))
    wait_done(browser)
    first = np.asarray(Image.open(io.BytesIO(download(server, browser, "download-png").content)))[:, :, 3]
    page = browser.current_window_handle
    browser.find_element("id", "edit").click()
    deadline = time.monotonic() + 20
    while len(browser.window_handles) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    [editor] = [handle for handle in browser.window_handles if handle != page]
    browser.switch_to.window(editor)
    wait_for(browser, "return location.pathname.startsWith('/edit/') && document.body.dataset.state === 'ready'")
    assert browser.find_element("id", "save").text == "儲存"  # no chat to send it to
    # An erase tap at the subject's centre, saved through the editor's own route (its gestures are
    # tested in test_editor_browser.py).
    rows, columns = np.nonzero(first > 128)
    y, x = int(np.median(rows)), int(np.median(columns))
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(location.pathname + "/save", {method: "POST", headers: {"Content-Type": "application/json"},
              body: JSON.stringify({marks: [{type: "tap", mode: "erase", x: arguments[0], y: arguments[1]}]})})
          .then((r) => r.json()).then(done);
    """, x, y)
    assert status == {"version": 1, "sent": False, "web": True}
    browser.find_element("id", "back").click()  # 回到去背頁面: closes the editor's tab
    deadline = time.monotonic() + 10
    while len(browser.window_handles) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser.window_handles == [page]
    browser.switch_to.window(page)
    browser.execute_script("window.dispatchEvent(new Event('focus'))")  # back on the page
    wait_for(browser, "return document.body.dataset.version === '1'")
    href = browser.find_element("id", "download-png").get_attribute("href")
    assert "v=1" in href
    fixed = np.asarray(Image.open(io.BytesIO(download(server, browser, "download-png").content)))[:, :, 3]
    assert first[y, x] > 128 and fixed[y, x] < 128  # the download is the saved fix
    wait_for(browser, "const a = document.getElementById('after'); return a.src.includes('v=1') && a.complete")
    shot(browser, artefacts, "page-after-edit")


def test_a_pasted_image_is_cut_out_on_a_phone(server, browser, artefacts, photos):
    open_page(browser, server, PHONE)
    prevented = browser.execute_script(MAKE_FILE + """
        const event = new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true, cancelable: true});
        document.body.dispatchEvent(event);
        return event.defaultPrevented;
    """, base64.b64encode(photos["troll"].read_bytes()).decode(), "image.jpg", "image/jpeg")
    assert prevented
    wait_done(browser)
    assert "image-cutout.png" in download(server, browser, "download-png").headers["Content-Disposition"]
    browser.execute_script("document.getElementById('result').scrollIntoView()")
    shot(browser, artefacts, "result-phone")


def test_a_sample_photo_on_a_blurred_background_downloads_fully_opaque(server, browser, artefacts):
    open_page(browser, server, DESKTOP)
    browser.find_element("css selector", '.sample[data-sample="teddy"]').click()
    wait_done(browser)
    browser.find_element("css selector", 'button.swatch[data-bg="blur"]').click()
    wait_for(browser, "const a = document.getElementById('after');"
                      "return a.src.includes('bg=blur') && a.complete && a.naturalWidth > 0")
    assert browser.find_element("css selector", 'button.swatch[data-bg="blur"]').get_attribute("aria-pressed") == "true"
    shot(browser, artefacts, "blur-desktop")
    for element_id, name in (("download-png", "teddy-cutout-blur.png"), ("download-jpg", "teddy-cutout-blur.jpg")):
        response = download(server, browser, element_id)
        assert f"filename={name}" in response.headers["Content-Disposition"]
        image = Image.open(io.BytesIO(response.content))
        assert image.size == (800, 800)
        assert "A" not in image.getbands() or image.getextrema()[3] == (255, 255), image.mode


def test_a_heic_photo_gets_a_preview_from_the_server_and_a_result(server, browser, artefacts, photos):
    open_page(browser, server, DESKTOP)
    browser.find_element("id", "file").send_keys(str(photos["heic"]))
    wait_done(browser)
    thumb = browser.execute_script("const t = document.getElementById('thumb');"
                                   "return [t.src, t.naturalWidth, window.__thumbAt < window.__stateAt.saving]")
    # Chrome cannot show HEIC: the server's JPEG of it, shown while the cutout was still being made.
    assert thumb[0].endswith("/original.jpg") and thumb[1] == 320 and thumb[2]
    before = browser.execute_script("return document.getElementById('before').naturalWidth")
    assert before == 320
    assert "IMG_0042-cutout.png" in download(server, browser, "download-png").headers["Content-Disposition"]
    shot(browser, artefacts, "heic-desktop")


@pytest.mark.parametrize("language, expected", [("zh-TW", "檔案太大了（上限 20 MB）"),
                                                ("en", "File too large (limit 20 MB)")])
def test_a_25_mb_file_shows_the_apis_json_error_in_the_pages_language(server, browser, artefacts, photos,
                                                                      language, expected):
    open_page(browser, server, DESKTOP, language)
    browser.find_element("id", "file").send_keys(str(photos["huge"]))
    wait_state(browser, "failed", "done")
    error = browser.find_element("id", "error-text")
    assert error.is_displayed() and expected in error.text
    assert "HTTP" not in error.text
    shot(browser, artefacts, f"too-large-{language}")


@pytest.mark.parametrize("language, expected", [("zh-TW", "這個檔案壞掉了或沒有傳完整，無法讀取。請重新上傳照片。"),
                                                ("en", "The file is damaged or incomplete; upload the photo again.")])
def test_a_damaged_photo_is_explained_in_the_pages_own_words(server, browser, photos, language, expected):
    # Not the decoder's detail ("image file is truncated (... bytes not processed)"), in either language.
    open_page(browser, server, PHONE, language)
    browser.find_element("id", "file").send_keys(str(photos["cut_short"]))
    wait_state(browser, "failed", "done")
    assert browser.find_element("id", "error-text").text == expected


def test_a_lang_link_opens_the_page_in_that_language_and_it_stays(server, browser):
    open_page(browser, server, DESKTOP, "zh-TW")
    browser.get(server.base_url + "/?lang=en")
    assert browser.execute_script("return document.documentElement.lang") == "en"
    assert browser.find_element("id", "lang").text == "中文"  # the toggle offers the other language
    browser.get(server.base_url + "/")  # remembered, as the toggle's choice is
    assert browser.execute_script("return document.documentElement.lang") == "en"
    browser.get(server.base_url + "/?lang=zh-TW")
    assert browser.execute_script("return document.documentElement.lang") == "zh-Hant-TW"


def test_the_url_field_sends_the_link_and_shows_why_it_was_refused(server, browser):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server, PHONE)
    field = browser.find_element("id", "url")
    field.send_keys("http://127.0.0.1:9/photo.jpg", Keys.ENTER)  # a private address: the server refuses it
    wait_state(browser, "failed", "done")
    assert "這個網址不能用" in browser.find_element("id", "error-text").text  # url_blocked, in the page's words
    # No photo came of it: the upload area stays, to correct the link or choose a file.
    assert browser.find_element("id", "url").is_displayed()
    field = browser.find_element("id", "url")
    field.clear()
    field.send_keys("not a link", Keys.ENTER)
    wait_for(browser, "return document.getElementById('error-text').textContent.includes('https://')")


def test_a_blank_photo_shows_the_no_subject_state_with_advice(server, browser, artefacts, photos):
    open_page(browser, server, PHONE)
    browser.find_element("id", "file").send_keys(str(photos["blank"]))
    assert wait_state(browser, "nosubject", "failed", "done") == "nosubject"
    panel = browser.find_element("id", "nosubject")
    assert panel.is_displayed() and not browser.find_element("id", "result").is_displayed()
    assert "找不到明顯的主體" in panel.text and len(panel.find_elements("css selector", "li")) >= 3
    browser.execute_script("arguments[0].scrollIntoView()", panel)
    shot(browser, artefacts, "no-subject-phone")


def test_contrast_icons_and_link_preview(server, browser):
    open_page(browser, server, DESKTOP)
    pairs = browser.execute_script("""
        const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const lum = ([r, g, b]) => [r, g, b]
          .map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
          .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
        const background = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
          if (!c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") return c; } return "rgb(255, 255, 255)"; };
        return ["#choose", "#drop-title", "#drop-hint", "#lang", ".sample span", "#url", "footer a", "footer p",
                "#url-form label"]
          .map((selector) => { const el = document.querySelector(selector);
            const a = lum(rgb(getComputedStyle(el).color)), b = lum(rgb(background(el)));
            return [selector, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; });
    """)
    low = [(selector, round(ratio, 2)) for selector, ratio in pairs if ratio < 4.5]
    assert not low, f"below WCAG AA 4.5:1: {low}"
    head = {name: browser.execute_script("const el = document.querySelector(arguments[0]);"
                                         "return el && el.getAttribute(arguments[1])", selector, attr)
            for name, selector, attr in (("og:title", 'meta[property="og:title"]', "content"),
                                         ("og:description", 'meta[property="og:description"]', "content"),
                                         ("og:image", 'meta[property="og:image"]', "content"),
                                         ("icon", 'link[rel="icon"]', "href"))}
    assert head["og:title"] and head["og:description"]
    assert head["og:image"] == server.base_url + "/static/og.jpg"
    preview = requests.get(head["og:image"], timeout=10)
    assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size == (1200, 630)
    for path in (head["icon"], "/favicon.ico", "/static/favicon.svg", "/static/apple-touch-icon.png"):
        assert requests.get(server.base_url + path, timeout=10).status_code == 200, path


def test_the_sample_photos_are_the_projects_own():
    """The samples are drawn by scripts/make_page_samples.py (the evaluation data is research-only)."""
    for name in ("teddy", "bottle", "plant"):
        image = Image.open(ROOT / "bot" / "web" / "static" / "samples" / f"{name}.jpg")
        assert image.format == "JPEG" and max(image.size) == 800


# --- presets and several photos (issue 15) ---------------------------------------------------------
DROP_FILES = """
    const transfer = new DataTransfer();
    for (const [b64, name] of arguments[0]) {
      const raw = atob(b64), bytes = new Uint8Array(raw.length);
      for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
      transfer.items.add(new File([bytes], name, {type: "image/jpeg"}));
    }
    for (const type of ["dragenter", "dragover", "drop"])
      document.body.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
"""


def test_choosing_product_turns_the_preview_square_and_the_download_follows(server, browser, artefacts):
    open_page(browser, server, PHONE)
    browser.find_element("css selector", '.sample[data-sample="bottle"]').click()
    wait_done(browser)
    assert browser.find_element("id", "preset-figure").get_attribute("hidden") is not None  # 原圖尺寸: none
    from selenium.webdriver.common.keys import Keys

    chosen = browser.find_element("css selector", 'input[name="preset"][value="original"]')
    chosen.send_keys(Keys.ARROW_RIGHT)  # the radio group's keys: the next choice, 商品圖
    assert browser.execute_script("return document.querySelector('input[name=preset]:checked').value") == "product"
    size = wait_for(browser, "const p = document.getElementById('preset-preview');"
                             "return p.src.includes('preset=product') && p.complete && p.naturalWidth > 0"
                             " && [p.naturalWidth, p.naturalHeight]")
    assert size[0] == size[1] and size[0] <= 480  # the server's small preview, square
    assert browser.find_element("id", "preset-caption").text.endswith("2000 × 2000")
    browser.execute_script("document.getElementById('preset-figure').scrollIntoView()")
    shot(browser, artefacts, "preset-product-phone")
    response = download(server, browser, "download-png")
    assert "bottle-product.png" in response.headers["Content-Disposition"]
    assert Image.open(io.BytesIO(response.content)).size == (2000, 2000)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0]  # the picker fits a 390 px phone: no sideways scrolling

    # A size the server refuses: the downloads wait (a tap would leave the page for a bare JSON error).
    side = browser.find_element("id", "p-side")
    side.clear()
    side.send_keys("5000")
    wait_for(browser, "return !document.getElementById('preset-error').hidden")
    wait_for(browser, "return document.getElementById('download-png').getAttribute('aria-disabled') === 'true'")
    page = browser.current_url
    browser.execute_script("document.getElementById('download-png').click()")
    time.sleep(0.5)
    assert browser.current_url == page and browser.find_element("id", "preset-error").is_displayed()
    side.clear()
    side.send_keys("1200")  # a size it takes: downloads again, once its preview has come
    wait_for(browser, "return document.getElementById('download-png').getAttribute('aria-disabled') === 'false'")
    assert Image.open(io.BytesIO(download(server, browser, "download-png").content)).size == (1200, 1200)


def test_two_dropped_photos_show_two_results_and_one_zip_of_both(server, browser, artefacts, photos, tmp_path):
    import zipfile

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    open_page(browser, server, DESKTOP)
    troll = base64.b64encode(photos["troll"].read_bytes()).decode()
    plant = base64.b64encode(jpeg_of(shared_image("GT13"))).decode()
    browser.execute_script(DROP_FILES, [[troll, "troll.jpg"], [plant, "plant.jpg"]])
    wait_for(browser, "return document.body.dataset.batchDone === '2'")
    wait_for(browser, "return [...document.querySelectorAll('#batch-list .tile img')]"
                      ".every((img) => img.src.includes('/view') && img.complete && img.naturalWidth > 0)")
    assert len(browser.find_elements("css selector", "#batch-list .tile")) == 2
    zip_button = browser.find_element("id", "zip")
    assert zip_button.is_displayed()
    assert_tab_reaches_every_control(browser)  # tiles' downloads, the preset picker, the ZIP button
    shot(browser, artefacts, "batch-desktop")
    zip_button.click()
    archive = Path(wait_for(browser, "return document.getElementById('zip-note').textContent.length > 0", 30) and downloads)
    deadline = time.monotonic() + 30
    while not list(archive.glob("*.zip")) and time.monotonic() < deadline:
        time.sleep(0.1)
    files = list(archive.glob("*.zip"))
    assert files, browser.find_element("id", "zip-note").text
    assert sorted(zipfile.ZipFile(files[0]).namelist()) == ["plant-cutout.png", "troll-cutout.png"]
    # On a 390 px phone: two tiles side by side, nothing wider than the screen.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True})
    tops = browser.execute_script("return [...document.querySelectorAll('#batch-list .tile')]"
                                  ".map((el) => Math.round(el.getBoundingClientRect().top))")
    assert tops[0] == tops[1] and browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    shot(browser, artefacts, "batch-phone")
