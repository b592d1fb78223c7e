"""Image URL fetching refuses private targets, plain http and oversize bodies."""
from __future__ import annotations

import threading
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
