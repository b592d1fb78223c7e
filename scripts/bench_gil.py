"""How long a thread that waits outside the GIL gets delayed by request threads decoding and encoding.

    python scripts/bench_gil.py [--clients 0,8,32] [--intervals 5,0.5]

The GPU pipeline thread waits outside the GIL at every host read of a device value (a `.cpu()`, a
`bool(t.any())`) and must then take the GIL back from the request threads of its process, which
decode JPEGs, encode PNGs and do NumPy work. This measures that cost without a GPU: a loop of
~15 us of Python followed by a 0.2 ms wait outside the GIL (the shape of a short GPU sync), timed
alone and beside N client threads, for each `sys.setswitchinterval` (Python's default is 5 ms).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import threading
import time

import numpy as np
from PIL import Image


def jpeg_photo() -> bytes:
    """A 1 MP JPEG with texture (so decoding and PNG encoding do real work)."""
    rng = np.random.default_rng(0)
    pixels = (rng.random((866, 1155, 3)) * 255).astype(np.uint8)
    pixels[::2] //= 2
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def request_thread(data: bytes, stop: threading.Event) -> None:
    while not stop.is_set():
        photo = Image.open(io.BytesIO(data)).convert("RGBA")
        photo.save(io.BytesIO(), "PNG")
        np.asarray(photo).astype(np.float32).mean()


def waiting_thread_ms(waits: int = 300) -> float:
    """ms per (Python work + one 0.2 ms wait outside the GIL)."""
    started = time.perf_counter()
    for _ in range(waits):
        total = 0
        for step in range(200):
            total += step
        time.sleep(0.0002)  # releases the GIL, as a CUDA synchronisation does
    return (time.perf_counter() - started) / waits * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="0,8,32")
    parser.add_argument("--intervals", default="5,0.5", help="sys.setswitchinterval values, in ms")
    args = parser.parse_args()
    data = jpeg_photo()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {len(os.sched_getaffinity(0))} cores")
    print("| switch interval | request threads | ms per wait (work + 0.2 ms outside the GIL) |")
    print("|---|---|---|")
    for interval in (float(v) / 1000 for v in args.intervals.split(",")):
        sys.setswitchinterval(interval)
        for clients in (int(v) for v in args.clients.split(",")):
            stop = threading.Event()
            threads = [threading.Thread(target=request_thread, args=(data, stop)) for _ in range(clients)]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            milliseconds = waiting_thread_ms()
            stop.set()
            for thread in threads:
                thread.join()
            print(f"| {interval * 1000:g} ms | {clients} | {milliseconds:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
