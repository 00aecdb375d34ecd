"""Model provisioning: loading the pipelines, the tiny and full-size random models, runtime tuning."""
