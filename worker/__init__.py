"""PoseAnimate's Celery workers: the tasks, the job runner (``gpu``), the pose extraction stage and
webhook delivery (``io``), and their metrics.

The job core they run on (job store, storage, queue, webhooks, and ``jobs.services``, where every
job ends) lives in ``jobs/``, shared with the API; the API never imports ``worker``. Only
``worker.animators`` touches the engine, by name and inside the job process (after the fork);
importing any other module here never imports torch.
"""
