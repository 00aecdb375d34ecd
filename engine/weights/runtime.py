"""Process-wide settings for running the engine on a CPU: glibc's malloc tuned for large tensors.

By default glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` when freed, and it trims the heap's free top back to the
kernel. A diffusion job allocates and frees activations and gradients of that size thousands of
times, so every one of them is faulted in page by page again: on the full-size CPU benchmark that is
a third of the job's time spent in the kernel (``bench/allocator.py``: 22 s of system time in a
66 s job, 8.6 M minor faults). Serving everything from the heap and keeping freed memory mapped
removes it (0.3 s of system time, 1.31x faster, peak RSS +34 MiB of 6.6 GiB).

``tune_cpu_allocator()`` sets that with ``mallopt`` in the running process (the equivalent of
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...:glibc.malloc.top_pad=...``
at start-up). The engine never calls it itself: it changes the whole process, so the entry points
that run the engine on a CPU (``poseanimate animate``/``eval``, the worker) do. On a C library other
than glibc it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_cpu_allocator"]

# mallopt parameter (glibc's malloc.h) -> value
_MALLOPT = {
    -4: 0,  # M_MMAP_MAX: no per-allocation mmap, every block comes from the heap and is reused
    -1: 1 << 30,  # M_TRIM_THRESHOLD: give the heap's free top back only above 1 GiB
    -2: 64 << 20,  # M_TOP_PAD: grow the heap 64 MiB at a time
}

_applied = False


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- present in glibc only (musl has mallopt too)
        return libc
    except (OSError, AttributeError):
        return None


def tune_cpu_allocator() -> bool:
    """Apply the settings above to this process; True when glibc took them (idempotent)."""
    global _applied
    if _applied:
        return True
    libc = _glibc()
    if libc is None:
        return False
    _applied = all(
        libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in _MALLOPT.items()
    )
    return _applied
