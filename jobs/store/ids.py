"""Job ids and API-key digests: the only identifiers the store derives itself."""

from __future__ import annotations

import hashlib
import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_last_id = 0
_id_lock = threading.Lock()


def new_job_id(now: float | None = None) -> str:
    """``anim_`` + a ULID: 48-bit millisecond time + 80 random bits, Crockford base32 (sorts by time).

    Monotonic within a process (ULID spec): a second id in the same millisecond is the previous one
    plus one, so listings keep submission order.
    """
    global _last_id
    ms = int((time.time() if now is None else now) * 1000)
    with _id_lock:
        value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
        if value >> 80 == _last_id >> 80 and value <= _last_id:
            value = _last_id + 1
        _last_id = value
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "anim_" + "".join(reversed(chars))


def key_digest(api_key: str) -> str:
    """sha256 hex of an API key: what the API compares presented keys against (never the key)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def owner_for_digest(digest: str) -> str:
    """The stable, non-secret owner id of a key digest (what Redis and logs see)."""
    return "key_" + digest[:16]


def owner_id_for_key(api_key: str) -> str:
    """The owner id of an API key."""
    return owner_for_digest(key_digest(api_key))
