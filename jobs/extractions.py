"""``POST /poses`` requests: a small Redis record per extraction that the io worker fills in and the
API polls (Celery runs without a result backend: the job store is the one truth).

``{p}:extraction:{id}``: JSON ``{"owner", "params", "video_key", "status", "poses", "report",
"skeleton_mp4", "error"}``, expiring ``EXTRACTION_TTL_S`` after its last write. The clip itself is in
storage under ``extractions/{id}/video.{ext}`` until the worker has read it (it deletes it then).
"""

from __future__ import annotations

import json
from typing import Any

from jobs.store import new_job_id

EXTRACTION_TTL_S = 3600
ID_PREFIX = "pose_"
ID_PATTERN = r"^pose_[0-9A-Z]{26}$"


def new_extraction_id() -> str:
    return ID_PREFIX + new_job_id().removeprefix("anim_")


def video_key(extraction_id: str, ext: str) -> str:
    return f"extractions/{extraction_id}/video.{ext}"


class ExtractionStore:
    """Reads and writes of extraction records on the job store's Redis client."""

    def __init__(self, client: Any, prefix: str = "pa", ttl_s: int = EXTRACTION_TTL_S) -> None:
        self.r, self.p, self.ttl_s = client, prefix, ttl_s

    def key(self, extraction_id: str) -> str:
        return f"{self.p}:extraction:{extraction_id}"

    def create(self, extraction_id: str, owner: str, params: dict[str, Any], video: str) -> None:
        record = {"owner": owner, "params": params, "video_key": video, "status": "queued"}
        self.r.set(self.key(extraction_id), json.dumps(record), ex=self.ttl_s)

    def get(self, extraction_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self.key(extraction_id))
        return None if raw is None else dict(json.loads(raw))

    def get_owned(self, extraction_id: str, owner: str) -> dict[str, Any] | None:
        record = self.get(extraction_id)
        return record if record is not None and record.get("owner") == owner else None

    def _finish(self, extraction_id: str, **fields: Any) -> None:
        record = self.get(extraction_id)
        if record is None or record["status"] != "queued":
            return
        record.update(fields)
        self.r.set(self.key(extraction_id), json.dumps(record), ex=self.ttl_s)

    def succeed(
        self, extraction_id: str, poses: dict[str, Any], report: dict[str, Any], skeleton_mp4: str | None
    ) -> None:
        self._finish(extraction_id, status="succeeded", poses=poses, report=report, skeleton_mp4=skeleton_mp4)

    def fail(self, extraction_id: str, code: str, message: str) -> None:
        self._finish(extraction_id, status="failed", error={"code": code, "message": message[:500]})
