"""A local double of Meta's Graph Send API (and of its image CDN), speaking the real HTTP shapes."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.doubles.line_platform import Received


class GraphPlatformDouble:
    def __init__(self, page_token: str = "test-page-token", version: str = "v21.0") -> None:
        self.page_token, self.version = page_token, version
        self.received: list[Received] = []
        self.cdn: dict[str, tuple[bytes, str]] = {}
        self.fail_next: list[tuple[int, dict]] = []  # answers to give to messages before succeeding
        self._condition = threading.Condition()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                name = self.path.removeprefix("/cdn/")
                if self.path.startswith("/cdn/") and name in double.cdn:
                    data, content_type = double.cdn[name]
                    return self._answer(200, data, content_type)
                self._answer(404, {"error": {"message": "Unknown path", "code": 803}})

            def do_POST(self):
                parts = urlsplit(self.path)
                token = parse_qs(parts.query).get("access_token", [""])[0]
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if parts.path != f"/{double.version}/me/messages":
                    return self._answer(404, {"error": {"message": "Unknown path", "code": 803}})
                if token != double.page_token:
                    return self._answer(400, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}})
                # Forced failures hit messages only, so a test controls what the user sees.
                status, answer = (double.fail_next.pop(0) if double.fail_next and "message" in body else
                                  (200, {"recipient_id": body.get("recipient", {}).get("id"), "message_id": f"m_{time.time_ns()}"}))
                with double._condition:
                    double.received.append(Received("POST", parts.path, dict(self.headers), body, status))
                    double._condition.notify_all()
                self._answer(status, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "GraphPlatformDouble":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_image(self, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
        self.cdn[name] = (data, content_type)
        return f"{self.base_url}/cdn/{name}"

    def messages(self) -> list[Received]:
        """Delivered messages (not sender actions)."""
        return [r for r in self.received if "message" in r.body and r.status == 200]

    def wait_for(self, predicate, timeout: float = 90.0) -> list[Received]:
        deadline = time.time() + timeout
        with self._condition:
            while not predicate(self):
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AssertionError(f"timed out; received: {[r.body for r in self.received]}")
                self._condition.wait(remaining)
        return list(self.received)
