"""PoseAnimate HTTP gateway (FastAPI). Never imports torch, diffusers or the engine."""
