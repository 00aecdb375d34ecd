"""Poses: the pose types, PATA (alignment and retargeting), rendering, detection and video I/O.

:mod:`.pose` (``Pose``, ``PoseSequence``), :mod:`.alignment` (PATA and bone retargeting),
:mod:`.render` (the ControlNet's OpenPose image), :mod:`.detect` (MediaPipe), :mod:`.extract` (poses
from a driving video), :mod:`.previews` (skeleton and side-by-side videos), :mod:`.video` (MP4 writing).
"""
