"""Every download from outside goes through here: image URLs, LINE content, Messenger attachments.

Limits are enforced while reading, not afterwards:
- one wall-clock deadline for the whole download, redirects and the retry included: every socket
  read waits at most the time left and returns whatever has arrived (read1), the deadline is
  checked after each read, and a watchdog shuts the socket at the deadline so that no phase (TLS
  handshake, a status line sent one byte at a time) can outlive it;
- a byte limit: a declared Content-Length over it is refused before reading, and the stream is
  counted as it arrives, so an endless body costs at most `max_bytes` of memory;
- at most one retry, only for failures before any body byte (connection errors, 429/5xx), and
  only inside the deadline; no library underneath retries on its own.

User-supplied URLs must be https to public addresses (each redirect hop checked), unless their
host is in CUTOUT_FETCH_ALLOWLIST (host[:port]; tests and private set-ups). The connection goes
to the very address that was checked, so DNS cannot swap in a private one in between.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from pipeline.decode import format_megabytes

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
RETRY_STATUSES = {429, 500, 502, 503, 504}
RETRY_PAUSE_S = 0.5
USER_AGENT = "CutoutBot/0.1"


class FetchError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "blocked" | "too_large" | "http" | "timeout" | "network"


class _Retryable(Exception):
    """A failure before any body byte arrived: worth one more try if time is left."""

    def __init__(self, error: FetchError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked IP address the socket connects to


def _host_port(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("blocked", f"not an http(s) URL: {url[:80]}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("blocked", f"bad port in {url[:80]}") from None
    return parts.hostname.lower(), port, parts.scheme


def is_allowlisted(host: str, port: int, allowlist: tuple[str, ...]) -> bool:
    return host in allowlist or f"{host}:{port}" in allowlist


def _resolve(host: str, port: int) -> list[str]:
    try:
        return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    except (socket.gaierror, UnicodeError) as error:
        raise FetchError("network", f"cannot resolve {host}") from error


def check_url(url: str, allowlist: tuple[str, ...] = (), trusted: bool = False) -> _Target:
    """Raise FetchError unless `url` is https to public addresses, or its host is allowlisted/trusted."""
    host, port, scheme = _host_port(url)
    checked = not (trusted or is_allowlisted(host, port, allowlist))
    if checked and scheme != "https":
        raise FetchError("blocked", "only https image URLs are accepted")
    addresses = _resolve(host, port)
    if checked:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global or ip.is_multicast:
                raise FetchError("blocked", f"{host} resolves to a non-public address")
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, port, path, addresses[0])


def fetch_url(url: str, max_bytes: int, timeout_s: float, allowlist: tuple[str, ...] = (),
              headers: dict[str, str] | None = None, trusted: bool = False) -> bytes:
    """GET `url`: at most `max_bytes`, within `timeout_s` overall, at most one retry.

    `trusted` skips the public-address check for the first hop (a platform's own API host, which
    tests point at loopback); `headers` (e.g. a bearer token) are dropped on a redirect elsewhere.
    """
    deadline = time.monotonic() + timeout_s
    try:
        return _fetch_with_one_retry(url, max_bytes, deadline, dict(headers or {}), allowlist, trusted)
    except _Retryable as failure:
        raise failure.error from None


def _fetch_with_one_retry(url: str, max_bytes: int, deadline: float, headers: dict[str, str],
                          allowlist: tuple[str, ...], trusted: bool) -> bytes:
    try:
        return _follow_redirects(url, max_bytes, deadline, headers, allowlist, trusted)
    except _Retryable:
        if deadline - time.monotonic() < 2 * RETRY_PAUSE_S:
            raise
        time.sleep(RETRY_PAUSE_S)
    return _follow_redirects(url, max_bytes, deadline, headers, allowlist, trusted)


def _follow_redirects(url: str, max_bytes: int, deadline: float, headers: dict[str, str],
                      allowlist: tuple[str, ...], trusted: bool) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        target = check_url(url, allowlist, trusted)
        location = _get(target, max_bytes, deadline, headers)
        if isinstance(location, bytes):
            return location
        next_url = urljoin(url, location)
        if _host_port(next_url)[:2] != (target.host, target.port):
            headers, trusted = {}, False  # credentials and trust belong to the first host only
        url = next_url
    raise FetchError("http", "too many redirects")


def _get(target: _Target, max_bytes: int, deadline: float, headers: dict[str, str]) -> bytes | str:
    """One request: the body (bytes) or a redirect's Location (str)."""
    remaining = _remaining(deadline)
    try:
        sock = socket.create_connection((target.address, target.port), timeout=remaining)
    except OSError as error:
        if time.monotonic() >= deadline:
            raise FetchError("timeout", "the image download timed out") from error
        raise _Retryable(FetchError("network", f"the image could not be downloaded ({type(error).__name__})")) from error
    watchdog = threading.Timer(remaining, _shut, args=(sock,))
    watchdog.daemon = True
    watchdog.start()
    connection = None
    try:
        try:
            if target.scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
                watchdog.args = (sock,)
            connection = http.client.HTTPConnection(target.host, target.port)
            connection.sock = sock  # already connected to the checked address
            connection.request("GET", target.path, headers={"User-Agent": USER_AGENT, **headers})
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            if time.monotonic() >= deadline:
                raise FetchError("timeout", "the image download timed out") from error
            raise _Retryable(FetchError("network", f"the image could not be downloaded ({type(error).__name__})")) from error
        return _read_response(response, max_bytes, deadline, sock)
    finally:
        watchdog.cancel()
        if connection is not None:
            connection.close()  # closes the response too, so the socket is really released
        sock.close()


def _read_response(response: http.client.HTTPResponse, max_bytes: int, deadline: float,
                   sock: socket.socket) -> bytes | str:
    if response.status in (301, 302, 303, 307, 308):
        return response.getheader("Location", "")
    if response.status in RETRY_STATUSES:
        raise _Retryable(FetchError("http", f"the image URL answered HTTP {response.status}"))
    if response.status != 200:
        raise FetchError("http", f"the image URL answered HTTP {response.status}")
    declared = response.getheader("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too_large", f"the image is {format_megabytes(int(declared))}; "
                                      f"the limit is {format_megabytes(max_bytes)}")
    body = bytearray()
    while True:
        sock.settimeout(_remaining(deadline))
        try:
            chunk = response.read1(CHUNK_BYTES)  # whatever has arrived, one socket read at most
        except (OSError, http.client.HTTPException) as error:
            if time.monotonic() >= deadline:
                raise FetchError("timeout", "the image download timed out") from error
            raise FetchError("network", f"the download broke off ({type(error).__name__})") from error
        if time.monotonic() >= deadline:
            raise FetchError("timeout", "the image download timed out")
        if not chunk:
            break
        body += chunk
        if len(body) > max_bytes:
            raise FetchError("too_large", f"the image is over the {format_megabytes(max_bytes)} limit")
    if declared.isdigit() and len(body) < int(declared):
        raise FetchError("network", "the download broke off before the end")
    return bytes(body)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError("timeout", "the image download timed out")
    return remaining


def _shut(sock: socket.socket) -> None:
    """Watchdog: wake any read blocked on `sock` (plain or TLS) once the deadline has passed."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
