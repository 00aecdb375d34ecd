import pytest
from pydantic import ValidationError

from engine.inputs.errors import InvalidInput
from jobs.contract import (
    EXAMPLE_POSES,
    AnimationCreate,
    AnimationParams,
    Job,
    JobList,
    JobStatus,
    Problem,
    ProgressEvent,
    WebhookEvent,
)
from jobs.intake.limits import ServiceLimits, check_params, effective_params
from jobs.lifecycle import TRANSITIONS, can_transition, overall_progress, sources_of
from jobs.settings import Settings


def test_only_succeeded_failed_canceled_are_terminal():
    assert {s for s in JobStatus if s.is_terminal()} == {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELED,
    }


def test_terminal_statuses_have_no_way_out():
    for status in JobStatus:
        if status.is_terminal():
            assert TRANSITIONS[status] == frozenset()
            assert not any(can_transition(status, to) for to in JobStatus)


def test_queued_job_can_be_canceled_or_started_but_not_succeed_directly():
    assert can_transition(JobStatus.QUEUED, JobStatus.CANCELED)
    assert can_transition(JobStatus.QUEUED, JobStatus.RUNNING)
    assert not can_transition(JobStatus.QUEUED, JobStatus.SUCCEEDED)
    assert sources_of(JobStatus.SUCCEEDED) == {JobStatus.RUNNING}


def test_running_job_may_restart_after_its_worker_died():
    assert can_transition(JobStatus.RUNNING, JobStatus.RUNNING)


def test_overall_progress_is_monotone_across_stages():
    points = [
        overall_progress(stage, f)
        for stage in (
            "extracting_poses",
            "loading",
            "inverting",
            "optimizing",
            "sampling",
            "encoding",
            "uploading",
        )
        for f in (0, 0.5, 1)
    ]
    assert points == sorted(points)
    assert points[0] == 0 and points[-1] == 1.0


def test_request_defaults_subscribe_to_terminal_webhook_events():
    req = AnimationCreate(image="https://example.com/a.png", poses=EXAMPLE_POSES, prompt="a person")
    assert req.webhook_events == [WebhookEvent.COMPLETED, WebhookEvent.FAILED, WebhookEvent.CANCELED]
    # Left out = the engine's default, filled in (and recorded on the job) by the limits table.
    assert req.fps is None and req.size is None and req.steps is None
    assert effective_params(req.model_dump(include=set(AnimationParams.model_fields)))["fps"] == 8


@pytest.mark.parametrize(
    "field,value", [("seed", -1), ("unknown_field", 1), ("webhook_events", ["exploded"]), ("steps", "many")]
)
def test_request_rejects_malformed_fields(field, value):
    body = {"image": "https://example.com/a.png", "poses": EXAMPLE_POSES, "prompt": "a person", field: value}
    with pytest.raises(ValidationError):
        AnimationCreate.model_validate(body)


@pytest.mark.parametrize(
    "field,value,code",
    [
        ("prompt", "", "prompt_blank"),
        ("fps", 0, "parameter_out_of_range"),
        ("fps", 61, "parameter_out_of_range"),
        ("size", 65, "parameter_out_of_range"),
        ("size", 32, "parameter_out_of_range"),
        ("width", 1032, "parameter_out_of_range"),
        ("steps", 0, "parameter_out_of_range"),
        ("steps", 101, "parameter_out_of_range"),  # the operator's POSEANIMATE_MAX_STEPS
        ("guidance", 0.5, "parameter_out_of_range"),
        ("transition_frames", -1, "parameter_out_of_range"),
        ("transition_frames", 121, "parameter_out_of_range"),
    ],
)
def test_the_limits_table_refuses_out_of_bounds_parameters_with_one_code(field, value, code):
    limits = ServiceLimits.from_settings(Settings(_env_file=None))
    with pytest.raises(InvalidInput) as info:
        check_params({"prompt": "a person", field: value}, limits)
    assert info.value.code == code


def test_service_limits_never_exceed_the_engines():
    from engine.inputs.rules import LIMITS

    limits = ServiceLimits.from_settings(Settings(_env_file=None, max_steps=10**6, max_size=10**6))
    assert (
        limits.params["steps"].maximum == LIMITS.max_steps
        and limits.params["size"].maximum == LIMITS.max_size
    )


def test_openapi_examples_validate_against_their_models():
    for example in Job.model_config["json_schema_extra"]["examples"]:
        Job.model_validate(example)
    for model in (AnimationCreate, ProgressEvent, JobList, Problem):
        for example in model.model_config["json_schema_extra"]["examples"]:
            model.model_validate(example)


def test_webhook_event_type_names():
    assert WebhookEvent.COMPLETED.type == "animation.completed"


def test_settings_read_operator_contract_env_names(monkeypatch):
    monkeypatch.setenv("POSEANIMATE_REDIS_URL", "redis://r:1/2")
    monkeypatch.setenv("POSEANIMATE_STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("POSEANIMATE_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("POSEANIMATE_MODEL", "tiny")
    monkeypatch.setenv("POSEANIMATE_API_KEYS", "k1, k2")
    monkeypatch.setenv("POSEANIMATE_WEBHOOK_SECRET", "whsec_c2VjcmV0")
    monkeypatch.setenv("POSEANIMATE_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("POSEANIMATE_DEVICE", "cpu")
    s = Settings(_env_file=None)
    assert (s.redis_url, s.storage_url, s.s3_endpoint_url, s.model) == (
        "redis://r:1/2",
        "s3://bucket/prefix",
        "http://minio:9000",
        "tiny",
    )
    assert s.api_keys == ["k1", "k2"] and s.allow_private_urls and s.device == "cpu"
    assert s.webhook_secret is not None and "c2VjcmV0" not in repr(s)


def test_settings_refuse_a_visibility_timeout_below_the_hard_limit():
    with pytest.raises(ValidationError):
        Settings(_env_file=None, hard_time_limit_s=3600, soft_time_limit_s=3000, visibility_timeout_s=3600)


def test_settings_refuse_a_webhook_secret_without_whsec_prefix():
    with pytest.raises(ValidationError):
        Settings(_env_file=None, webhook_secret="plain")


def test_env_example_lists_every_setting_with_its_default():
    import re
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / ".env.example"
    names = set(re.findall(r"^POSEANIMATE_([A-Z0-9_]+)=", path.read_text(), re.M))
    assert names == {name.upper() for name in Settings.model_fields}
    assert Settings(_env_file=path) == Settings(_env_file=None)


def test_readme_documents_every_setting():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `POSEANIMATE_([A-Z0-9_]+)` \|", readme, re.M))
    assert documented == {name.upper() for name in Settings.model_fields}
