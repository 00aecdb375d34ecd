"""PoseAnimate workers, job store, storage and webhooks. Only ``worker.tasks`` touches the engine."""
