"""Free loopback ports in the range the scale-out servers use (18800-18999)."""
from __future__ import annotations

import random
import socket

PORT_RANGE = range(18800, 19000)


def free_port_in_range() -> int:
    for port in random.sample(list(PORT_RANGE), len(PORT_RANGE)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
