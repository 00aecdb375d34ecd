"""PoseAnimate engine: zero-shot pose-controllable character animation on SD-1.5 + OpenPose ControlNet.

Pure: torch, diffusers, numpy and PIL only. No HTTP, queues, Redis, object storage or environment reads.
"""
