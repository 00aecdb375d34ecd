"""The engine's torch-free inputs: what a job may contain, checked before any model is loaded.

The pose file format (:mod:`.poseformat`), the input rules every front door applies (:mod:`.rules`),
the one refusal type (:mod:`.errors`), the served model names (:mod:`.models`) and the driving-video
probe (:mod:`.videoprobe`). Standard library, numpy and PyAV only: this is the only part of the
engine that ``api`` and ``jobs`` may import (one import-linter contract says so).
"""
