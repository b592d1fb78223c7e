"""A local double of the LINE Messaging API, speaking its real HTTP shapes.

Implements what Cutout Bot calls: reply, push (with X-Line-Retry-Key semantics: a repeated key
answers 409), loading animation, and message content download (api-data's path). Reply tokens
are single-use and can be made to expire. Everything received is recorded for assertions.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    at: float = field(default_factory=time.time)


class LinePlatformDouble:
    def __init__(self, access_token: str = "test-access-token") -> None:
        self.access_token = access_token
        self.received: list[Received] = []
        self.contents: dict[str, tuple[bytes, str]] = {}
        self.valid_reply_tokens: set[str] = set()
        self.seen_retry_keys: set[str] = set()
        self.fail_next: dict[str, int] = {}  # path -> HTTP status to answer once
        # path -> seconds LINE takes to answer a request it accepted, after acting on it (a slow
        # but successful reply); refusals still come at once.
        self.delay_s: dict[str, float] = {}
        # path -> seconds LINE hangs before doing anything at all (a stalled API).
        self.stall_s: dict[str, float] = {}
        self._condition = threading.Condition()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _answer(self, status: int, body: Any = None, content_type: str = "application/json") -> None:
                delay = double.delay_s.get(self.path.split("?")[0], 0.0) if status < 400 else 0.0
                if delay and getattr(self, "_recorded", None) is not None:
                    self._recorded.status = status  # LINE has acted: the message is delivered...
                    with double._condition:
                        double._condition.notify_all()
                    time.sleep(delay)  # ...but the caller hears of it only now (or never, if it died)
                if getattr(self, "_recorded", None) is not None:
                    with double._condition:
                        self._recorded.status = status
                        double._condition.notify_all()
                data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the caller was killed (or gave up) while waiting
                    pass

            def _record(self, body: Any) -> None:
                self._recorded = Received(self.command, self.path, dict(self.headers), body)
                with double._condition:
                    double.received.append(self._recorded)
                    double._condition.notify_all()

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {double.access_token}":
                    self._answer(401, {"message": "Authentication failed"})
                    return False
                return True

            def do_GET(self):
                if not self._authorised():
                    return
                parts = self.path.strip("/").split("/")
                if len(parts) == 5 and parts[:3] == ["v2", "bot", "message"] and parts[4] == "content":
                    self._record(None)
                    if parts[3] not in double.contents:
                        return self._answer(404, {"message": "Not found"})
                    data, content_type = double.contents[parts[3]]
                    return self._answer(200, data, content_type)
                self._answer(404, {"message": "Not found"})

            def do_POST(self):
                if not self._authorised():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    return self._answer(400, {"message": "The request body has 1 error(s)"})
                self._record(body)
                time.sleep(double.stall_s.get(self.path, 0.0))
                forced = double.fail_next.pop(self.path, None)
                if forced:
                    return self._answer(forced, {"message": "forced failure"})
                if self.path == "/v2/bot/message/reply":
                    token = body.get("replyToken")
                    if token not in double.valid_reply_tokens:
                        return self._answer(400, {"message": "Invalid reply token"})
                    double.valid_reply_tokens.discard(token)  # single use
                    return self._answer(200, {"sentMessages": [{"id": "1", "quoteToken": "q"}]})
                if self.path == "/v2/bot/message/push":
                    key = self.headers.get("X-Line-Retry-Key")
                    if key and key in double.seen_retry_keys:
                        return self._answer(409, {"message": "The retry key is already accepted"})
                    if key:
                        double.seen_retry_keys.add(key)
                    return self._answer(200, {"sentMessages": [{"id": "2", "quoteToken": "q"}]})
                if self.path == "/v2/bot/chat/loading/start":
                    return self._answer(202, {})
                self._answer(404, {"message": "Not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "LinePlatformDouble":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_content(self, message_id: str, data: bytes, content_type: str = "image/jpeg") -> None:
        self.contents[message_id] = (data, content_type)

    def messages_sent(self) -> list[Received]:
        return [r for r in self.received if r.path in ("/v2/bot/message/reply", "/v2/bot/message/push")]

    def delivered(self) -> list[Received]:
        """Reply/push calls LINE accepted (200): what users actually saw."""
        return [r for r in self.messages_sent() if r.status == 200]

    def wait_for(self, predicate, timeout: float = 60.0) -> list[Received]:
        """Block until predicate(received) is true; return the received list."""
        deadline = time.time() + timeout
        with self._condition:
            while not predicate(self.received):
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AssertionError(f"timed out; received: {[(r.path, r.body) for r in self.received]}")
                self._condition.wait(remaining)
            return list(self.received)
