"""The worker's Celery app with a slow, deterministic pose detector (``TEST_DETECT_FRAME_S`` seconds a
frame, the same pose every time) in place of MediaPipe, for the per-key fairness test: an extraction
costs a known time on a busy machine. Run as ``celery -A tests.integration.slow_extraction:app worker``
(``servers.worker_process(celery_app=...)``)."""

from __future__ import annotations

import os
import time

import numpy as np
from PIL import Image

from engine.poses.detect import available_pose_detectors, register_pose_detector
from engine.poses.pose import Pose
from worker.celery_app import app

FRAME_S = float(os.environ.get("TEST_DETECT_FRAME_S", "0.1"))


class SlowDetector:
    name = "slow-test"

    def detect(self, image: Image.Image) -> Pose:
        time.sleep(FRAME_S)
        w, h = image.size
        i = np.arange(18)
        return Pose(np.stack([w * (0.3 + 0.02 * i), h * (0.1 + 0.04 * i), np.full(18, 0.9)], axis=1), w, h)


for _name in available_pose_detectors():  # whichever "auto" (the worker's choice) takes, for any parts
    register_pose_detector(_name, SlowDetector)

__all__ = ["app"]
