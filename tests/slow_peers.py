"""Misbehaving HTTP peers on loopback for the fetch tests: drips, endless bodies, flaky servers."""
from __future__ import annotations

import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENDLESS_BYTES = 1_500_000_000  # what a hostile peer offers: 1.5 GB
PORTS = range(18000, 19000)  # the loopback range these tests may use


class SlowPeers:
    """Paths: /drip (1 byte/s body), /drip-status (1 byte/s status line), /endless (1.5 GB, no
    length), /declared (Content-Length 1.5 GB), /flaky (always 503). LINE content paths
    /v2/bot/message/<id>/content drip like /drip. `hits` counts requests per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        peers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                peers.hits[path] = peers.hits.get(path, 0) + 1
                try:
                    if path == "/drip-status":
                        return self._drip(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
                    if path == "/drip" or path.endswith("/content"):
                        self._headers(200, {"Content-Length": "1000", "Content-Type": "image/jpeg"})
                        return self._drip(b"\xff" * 1000)
                    if path == "/endless":
                        self._headers(200, {"Connection": "close", "Content-Type": "image/jpeg"})
                        return self._endless()
                    if path == "/declared":
                        self._headers(200, {"Content-Length": str(ENDLESS_BYTES)})
                        return self._endless()
                    self._headers(503 if path == "/flaky" else 404, {"Content-Length": "0"})
                except OSError:  # the client hung up: the point of most of these tests
                    pass

            def _headers(self, status: int, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.flush()

            def _drip(self, data: bytes) -> None:
                for byte in data:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1.0)

            def _endless(self) -> None:
                block = b"\x00" * (256 * 1024)
                for _ in range(ENDLESS_BYTES // len(block)):
                    self.wfile.write(block)
                self.close_connection = True

        for port in random.sample(PORTS, 50):
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
