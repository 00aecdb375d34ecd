"""What a submission takes and what recovers it: the per-key quota slot, the Idempotency-Key claim,
the outbox of created-but-unsent jobs and the index of running jobs whose worker vanished."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any


class Submissions:
    """Mixin of ``JobStore``: needs ``self.r``, ``self.p``, the key helpers and the scripts."""

    r: Any
    p: str
    _reserve: Any
    _claim_unsent: Any
    _claim_idempotency: Any
    _claim_orphaned: Any

    def active_key(self, owner: str) -> str:
        raise NotImplementedError

    @property
    def unsent_key(self) -> str:
        raise NotImplementedError

    @property
    def running_key(self) -> str:
        raise NotImplementedError

    def reserve_slot(self, owner: str, job_id: str, max_active: int, stale_after_s: float = 600) -> bool:
        """Take one of the key's ``max_active`` queued+running slots, or refuse."""
        ok = self._reserve(
            keys=[self.active_key(owner)],
            args=[job_id, max_active, time.time(), f"{self.p}:job:", stale_after_s],
        )
        return bool(int(ok))

    def release_slot(self, owner: str, job_id: str) -> None:
        self.r.zrem(self.active_key(owner), job_id)

    def mark_sent(self, job_id: str) -> None:
        self.r.zrem(self.unsent_key, job_id)

    def claim_orphaned(self, lock_ttl_s: float, limit: int = 100) -> list[str]:
        """Running jobs without a job lock (checked ``lock_ttl_s`` after they started or were last
        seen alive): their worker is gone. Each is returned once."""
        now = time.time()
        ids = self._claim_orphaned(
            keys=[self.running_key],
            args=[now - lock_ttl_s, now, limit, f"{self.p}:job:", f"{self.p}:lock:"],
        )
        return [str(i) for i in ids]

    def claim_unsent(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Outbox entries older than ``older_than_s``, leased to this caller for that long."""
        now = time.time()
        ids = self._claim_unsent(keys=[self.unsent_key], args=[now - older_than_s, now, limit])
        return [str(i) for i in ids]

    def idempotency_key(self, owner: str, key: str) -> str:
        return f"{self.p}:idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"

    def claim_idempotency(
        self, owner: str, key: str, job_id: str, body_hash: str, ttl_s: int, stale_after_s: float = 120.0
    ) -> dict[str, str] | None:
        """Claim the key for ``job_id``; if already claimed, return the earlier ``{job_id, hash}``.

        A claim older than ``stale_after_s`` whose job was never created is abandoned (its request
        died midway) and is taken over.
        """
        now = time.time()
        value = json.dumps({"job_id": job_id, "hash": body_hash, "at": round(now, 3)})
        existing = self._claim_idempotency(
            keys=[self.idempotency_key(owner, key)],
            args=[value, ttl_s, f"{self.p}:job:", now, stale_after_s],
        )
        if not existing:
            return None
        claim = json.loads(str(existing))
        return {"job_id": str(claim["job_id"]), "hash": str(claim["hash"])}

    def release_idempotency(self, owner: str, key: str, job_id: str) -> None:
        rkey = self.idempotency_key(owner, key)
        existing = self.r.get(rkey)
        if existing is not None and json.loads(str(existing)).get("job_id") == job_id:
            self.r.delete(rkey)
