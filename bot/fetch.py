"""Download a user-supplied image URL safely: https only, public addresses only, size and time limits.

Hosts listed in CUTOUT_FETCH_ALLOWLIST (host[:port]) are trusted as they are (http and private
addresses allowed): that is how tests and private set-ups point at local servers.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import requests

MAX_REDIRECTS = 3


class FetchError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "blocked" | "too_large" | "http" | "timeout" | "network"


def _host_port(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("blocked", f"not an http(s) URL: {url[:80]}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname.lower(), port, parts.scheme


def is_allowlisted(host: str, port: int, allowlist: tuple[str, ...]) -> bool:
    return host in allowlist or f"{host}:{port}" in allowlist


def check_url(url: str, allowlist: tuple[str, ...] = ()) -> None:
    """Raise FetchError unless `url` is https to public addresses, or its host is allowlisted."""
    host, port, scheme = _host_port(url)
    if is_allowlisted(host, port, allowlist):
        return
    if scheme != "https":
        raise FetchError("blocked", "only https image URLs are accepted")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror as error:
        raise FetchError("network", f"cannot resolve {host}") from error
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise FetchError("blocked", f"{host} resolves to a non-public address")


def fetch_url(url: str, max_bytes: int, timeout_s: float, allowlist: tuple[str, ...] = ()) -> bytes:
    """GET `url` with every hop checked, at most `max_bytes`, within `timeout_s` overall."""
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        check_url(url, allowlist)
        remaining = max(0.5, deadline - time.monotonic())
        try:
            response = requests.get(url, stream=True, timeout=remaining, allow_redirects=False,
                                    headers={"User-Agent": "CutoutBot/0.1"})
        except requests.Timeout as error:
            raise FetchError("timeout", "the image download timed out") from error
        except requests.RequestException as error:
            raise FetchError("network", f"the image could not be downloaded ({type(error).__name__})") from error
        with response:
            if response.is_redirect:
                url = urljoin(url, response.headers.get("Location", ""))
                continue
            if response.status_code != 200:
                raise FetchError("http", f"the image URL answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError("too_large", f"the image is {int(declared) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError("too_large", f"the image is over the {max_bytes / 1e6:.0f} MB limit")
                if time.monotonic() > deadline:
                    raise FetchError("timeout", "the image download timed out")
                chunks.append(chunk)
            return b"".join(chunks)
    raise FetchError("http", "too many redirects")
