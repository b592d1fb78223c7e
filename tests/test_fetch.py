"""Image URL fetching refuses private targets, plain http and oversize bodies."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.fetch import FetchError, check_url, fetch_url


@pytest.mark.parametrize("url", ["http://example.com/a.jpg", "https://127.0.0.1/a.jpg", "https://10.0.0.8/x.png",
                                 "https://[::1]/x.png", "https://169.254.169.254/latest/meta-data", "file:///etc/passwd",
                                 "ftp://example.com/a.jpg"])
def test_blocked_urls(url):
    with pytest.raises(FetchError) as caught:
        check_url(url)
    assert caught.value.reason in ("blocked", "network")


@pytest.fixture
def local_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.2:1/private")
                self.end_headers()
                return
            body = b"x" * (5000 if self.path == "/big" else 100)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_allowlisted_host_limits_and_redirect_checks(local_server):
    allow = (local_server,)
    assert fetch_url(f"http://{local_server}/small", 1000, 5, allow) == b"x" * 100
    with pytest.raises(FetchError) as too_big:
        fetch_url(f"http://{local_server}/big", 1000, 5, allow)
    assert too_big.value.reason == "too_large"
    with pytest.raises(FetchError) as redirected:
        fetch_url(f"http://{local_server}/redirect", 1000, 5, allow)  # hop to a non-allowlisted private host
    assert redirected.value.reason == "blocked"
    with pytest.raises(FetchError):
        fetch_url(f"http://{local_server}/small", 1000, 5, ())  # not allowlisted: refused


@pytest.fixture
def peers():
    from tests.slow_peers import SlowPeers

    server = SlowPeers()
    yield server
    server.stop()


def timed_failure(call) -> tuple[FetchError, float]:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        call()
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("path", ["/drip", "/drip-status"])
def test_a_one_byte_per_second_drip_is_cut_at_the_deadline(peers, path):
    error, elapsed = timed_failure(lambda: fetch_url(peers.base_url + path, 10_000, 3, (peers.host,)))
    assert error.reason == "timeout" and "timed out" in str(error)
    assert 1 <= elapsed <= 5, elapsed  # the deadline (3 s) +- 2 s
    assert peers.hits[path] == 1  # a timeout is never retried: the deadline is spent


def test_line_content_drip_is_cut_at_the_deadline(peers):
    from bot.channels.line import LineChannel
    from bot.events import ImageSource
    from settings import Settings

    channel = LineChannel(Settings(line_channel_secret="s", line_channel_access_token="t",
                                   line_api_base_url=peers.base_url, fetch_timeout_s=3))
    error, elapsed = timed_failure(lambda: channel.fetch_image(ImageSource("line_content", "4711")))
    assert error.reason == "timeout" and 1 <= elapsed <= 5, elapsed
    assert peers.hits["/v2/bot/message/4711/content"] == 1


def rss_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_an_endless_body_stops_at_the_byte_limit_with_flat_memory(peers):
    limit = 20 * 1024 * 1024
    peak, stop = [rss_bytes()], threading.Event()
    before = peak[0]

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        endless, elapsed = timed_failure(lambda: fetch_url(peers.base_url + "/endless", limit, 30, (peers.host,)))
        declared, _ = timed_failure(lambda: fetch_url(peers.base_url + "/declared", limit, 30, (peers.host,)))
    finally:
        stop.set()
        sampler.join()
    assert endless.reason == declared.reason == "too_large" and "20 MB" in str(endless)
    assert elapsed < 10
    growth = peak[0] - before
    print(f"RSS growth while refusing a 1.5 GB body: {growth / 2**20:.1f} MiB (limit {limit / 2**20:.0f} MiB)")
    assert growth < 3 * limit  # the body up to the limit, and no more


def test_at_most_one_retry(peers):
    error, _ = timed_failure(lambda: fetch_url(peers.base_url + "/flaky", 1000, 5, (peers.host,)))
    assert error.reason == "http" and "503" in str(error)
    assert peers.hits["/flaky"] == 2
