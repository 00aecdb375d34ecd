"""Watch the sockets this process holds while some code runs (``/proc/self/fd``): a background thread
notes every socket file descriptor that appears, however briefly, next to the ones open before."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def open_sockets() -> set[str]:
    """``socket:[inode]`` of every socket this process holds now."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


@contextmanager
def new_sockets(interval_s: float = 0.002) -> Iterator[set[str]]:
    """Yields a set filled with the sockets opened inside the block (polled every ``interval_s``)."""
    before = open_sockets()
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(open_sockets() - before)
            done.wait(interval_s)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()
        seen.update(open_sockets() - before)
