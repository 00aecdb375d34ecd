"""PoseAnimate workers, job store, storage and webhooks: torch-free, imported by the API too.

Only ``worker.animators`` touches the engine, by name and inside the job process (after the fork);
importing any module here never imports torch.
"""
