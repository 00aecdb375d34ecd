"""Per-key fairness of driving-video extractions (issue 24, M1): at most ``extraction_slots_per_key``
extractions of one API key run at once, across every io worker.

Before, the io workers ran extractions in arrival order under one lock per process: key A's 14 queued
GIF extractions (~11.5 s each) held key B's one ``POST /poses`` 207 s. Now an extraction first takes
one of its key's slots; a task whose key has none free is *deferred* (the io task retries after
``extraction_defer_s``, freeing its thread), so another key's extraction, queued later, runs next.
Another key waits at most for the extractions already running, never for a key's whole backlog.

Redis (``{p}`` the key prefix, ``{owner}`` the key's owner id, never the key):

``{p}:xslots:{owner}``  zset  holder (job or extraction id) -> lease expiry (Redis server time, ms)
``{p}:xwait:{owner}``   zset  waiting holder -> its turn (``{p}:xseq:{owner}``, a counter): FIFO order
``{p}:xseen:{owner}``   zset  waiting holder -> when it last asked (a waiter gone quiet is dropped)

Nothing is lost on a worker's death: a slot is a lease (``extraction_slot_ttl_s``, renewed by a thread
while its extraction runs) and a waiter that stops asking leaves the line after five deferrals, so
a killed worker's slot frees within the TTL and its redelivered message takes a slot again. A
redelivered holder that still holds its slot keeps it (acquiring is idempotent).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

# KEYS: slots, waiters, seen, sequence. ARGV: holder, slots per key, lease ms, waiter staleness ms.
# 1: the holder has a slot (new, or its own renewed); 0: it waits (its place in line kept).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder, per_key = ARGV[1], tonumber(ARGV[2])
local lease, stale = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local quiet = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - stale)
for _, gone in ipairs(quiet) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
end
if redis.call('ZSCORE', KEYS[1], holder) then
  redis.call('ZADD', KEYS[1], now + lease, holder)
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
local free = per_key - redis.call('ZCARD', KEYS[1])
local place = redis.call('ZRANK', KEYS[2], holder)
if place == false then place = redis.call('ZCARD', KEYS[2]) end
if free > 0 and place < free then
  redis.call('ZADD', KEYS[1], now + lease, holder)
  redis.call('PEXPIRE', KEYS[1], lease)
  redis.call('ZREM', KEYS[2], holder)
  redis.call('ZREM', KEYS[3], holder)
  return 1
end
if not redis.call('ZSCORE', KEYS[2], holder) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), holder)
end
redis.call('ZADD', KEYS[3], now, holder)
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], stale) end
return 0
"""

# KEYS: slots. ARGV: holder, lease ms. 1 when the holder still had its slot (renewed), else 0.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


class ExtractionSlots:
    """The per-key extraction slots on the job store's Redis client."""

    def __init__(self, client: Any, prefix: str, per_key: int, ttl_s: float, defer_s: float) -> None:
        self.r, self.p, self.per_key = client, prefix, per_key
        self.lease_ms = max(1000, int(ttl_s * 1000))
        # A waiter asks again every defer_s; one silent for five deferrals (a second at least) is gone
        # (canceled, deleted, or its worker died): it no longer holds up the key's line. A live one
        # that was only late (its worker's threads all busy) just rejoins at the back.
        self.stale_ms = max(1000, int(defer_s * 1000 * 5))
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    def _keys(self, owner: str) -> list[str]:
        return [f"{self.p}:{name}:{owner}" for name in ("xslots", "xwait", "xseen", "xseq")]

    def acquire(self, owner: str, holder: str) -> bool:
        """Take one of ``owner``'s slots for ``holder``; False: wait your turn (and ask again)."""
        args = [holder, self.per_key, self.lease_ms, self.stale_ms]
        return bool(self._acquire(keys=self._keys(owner), args=args))

    def renew(self, owner: str, holder: str) -> bool:
        return bool(self._renew(keys=self._keys(owner)[:1], args=[holder, self.lease_ms]))

    def release(self, owner: str, holder: str) -> None:
        self.r.zrem(self._keys(owner)[0], holder)

    def leave(self, owner: str, holder: str) -> None:
        """``holder`` stops waiting (its job was canceled or its extraction is done): the next in
        line need not wait for it to go quiet."""
        _, waiters, seen, _ = self._keys(owner)
        self.r.zrem(waiters, holder)
        self.r.zrem(seen, holder)

    def running(self, owner: str) -> list[str]:
        """The holders of ``owner``'s slots now (expired leases included until the next acquire)."""
        return [
            m.decode() if isinstance(m, bytes) else str(m) for m in self.r.zrange(self._keys(owner)[0], 0, -1)
        ]

    @contextmanager
    def held(self, owner: str, holder: str) -> Iterator[bool]:
        """``True`` with a slot held (renewed every third of its lease until the block ends, then
        released), or ``False`` when the key has none free."""
        if not self.acquire(owner, holder):
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_ms / 3000):
                try:
                    self.renew(owner, holder)
                except Exception:  # Redis away a moment: the lease is long enough to try again
                    continue

        renewer = threading.Thread(target=renew, name=f"slot-{holder}", daemon=True)
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join(timeout=5)
            with suppress(Exception):  # else the lease expires by itself
                self.release(owner, holder)
