"""Signed, expiring tokens for result URLs: /r/<token> serves a blob until the token expires.

token = base64url("<key>|<expires_unix>") + "." + base64url(HMAC-SHA256(secret, payload)[:18])
Keys contain a random job id, and the MAC makes tokens unforgeable, so they are unguessable.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from pathlib import Path


class InvalidToken(ValueError):
    pass


class ExpiredToken(InvalidToken):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_secret(path: Path) -> bytes:
    """A signing secret that survives restarts (so URLs already sent keep working)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with open(path.with_suffix(".tmp"), "w") as out:
            out.write(secrets.token_hex(32))
        path.with_suffix(".tmp").replace(path)
    return path.read_text().strip().encode()


class UrlSigner:
    def __init__(self, secret: bytes, default_ttl_s: int) -> None:
        self.secret = secret
        self.default_ttl_s = default_ttl_s

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, payload, hashlib.sha256).digest()[:18]

    def sign(self, key: str, ttl_s: int | None = None, now: float | None = None,
             expires_at: float | None = None) -> str:
        """A token for `key`, valid `ttl_s` (default: the signer's) from `now`, or until the whole
        second `expires_at` when given (a link that expires with what it opens)."""
        expires = int(expires_at if expires_at is not None else (now or time.time()) + (ttl_s or self.default_ttl_s))
        payload = f"{key}|{expires}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float | None = None) -> str:
        """Return the blob key, or raise InvalidToken / ExpiredToken."""
        try:
            payload_part, mac_part = token.split(".", 1)
            payload = _unb64(payload_part)
            mac = _unb64(mac_part)
        except (ValueError, TypeError):
            raise InvalidToken("malformed token") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidToken("bad signature")
        key, _, expires = payload.decode(errors="replace").rpartition("|")
        if not key or not expires.isdigit():
            raise InvalidToken("malformed token")
        if int(expires) < (now or time.time()):
            raise ExpiredToken("token expired")
        return key


def signing_secret(configured: str, data_dir: Path) -> bytes:
    """CUTOUT_SIGNING_SECRET when set (every machine of a fleet signs and verifies alike), else a
    secret file in the data folder, made on first start (one machine)."""
    return configured.encode() if configured else load_or_create_secret(data_dir / "secret.key")
