"""Job ids and API-key digests: the only identifiers the store derives itself."""

from __future__ import annotations

import hashlib
import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id(now: float | None = None) -> str:
    """``anim_`` + a ULID: 48-bit millisecond time + 80 fresh random bits, Crockford base32 (sorts by
    time, to the millisecond).

    Not the ULID spec's monotonic mode: that makes a second id in the same millisecond the previous
    one plus one, so a neighbour's job id (and its storage keys) could be guessed from one's own.
    Jobs created within one millisecond list in random order.
    """
    ms = int((time.time() if now is None else now) * 1000)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
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
