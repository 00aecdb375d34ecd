"""Health, readiness, metrics, signed file links, error shapes, OpenAPI, and the torch-free import."""

import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support.api import finish_with_outputs
from tests.support.layout import engine_leaves, torch_free_import_check
from tests.support.payloads import job_body
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_api_app_leaves_torch_out():
    code = torch_free_import_check(
        "from api.main import create_app\n"
        "from jobs.settings import Settings\n"
        "create_app(Settings(_env_file=None, redis_url='redis://127.0.0.1:1/0', env='development')).openapi()",
        ("torch", "diffusers", "transformers"),
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_api_package_never_imports_torch_diffusers_or_the_engine_beyond_its_leaves():
    names = "|".join(m.removeprefix("engine.") for m in engine_leaves() if m != "engine")
    pattern = re.compile(rf"^\s*(import|from)\s+(torch|diffusers|engine(?!\.({names})\b))", re.M)
    assert pattern.search("from engine.method.pipeline import x") and not pattern.search(
        "from engine.inputs.rules import x"
    )
    offenders = [str(p) for p in (REPO / "api").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"redis": "ok", "storage": "ok"}


def test_readyz_and_api_answer_503_when_redis_is_down(make_settings, make_client):
    client = make_client(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["code"] == "not_ready" and "redis" in r.json()["detail"]
    r = client.post("/animations", json=job_body())
    assert r.status_code == 503 and r.json()["code"] == "service_unavailable" and r.headers["retry-after"]


def test_metrics_exposes_request_and_queue_series(client):
    client.post("/animations", json=job_body())
    client.get("/animations/anim_00000000000000000000000000")
    text = client.get("/metrics").text
    assert 'poseanimate_http_requests_total{method="POST",route="/animations",status="202"} 1.0' in text
    assert 'route="/animations/{job_id}",status="404"' in text
    assert 'poseanimate_jobs_submitted_total{outcome="accepted"} 1.0' in text
    assert "poseanimate_queue_jobs 1.0" in text
    assert 'poseanimate_broker_queue_messages{queue="gpu"} 1.0' in text
    assert "poseanimate_http_request_duration_seconds_bucket" in text
    assert "anim_" not in text  # no job ids in labels


def test_local_storage_outputs_are_served_by_signed_expiring_links(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    finish_with_outputs(client, job_id)
    job = client.get(f"/animations/{job_id}").json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    video_url = job["output"]["video_url"]
    assert video_url.startswith("http://testserver/files/outputs/")
    anonymous = client.get(video_url, headers={"Authorization": ""})
    assert anonymous.status_code == 200 and anonymous.content == b"mp4-bytes"
    assert anonymous.headers["content-type"] == "video/mp4"
    tampered = video_url.replace("animation.mp4", "poster.png")
    assert client.get(tampered).status_code == 403
    expired = re.sub(r"expires=\d+", f"expires={int(time.time()) - 10}", video_url)
    assert client.get(expired).json()["code"] == "link_invalid"
    assert (
        client.get(f"/files/inputs/{job_id}/image.png?expires=9999999999&sig={'0' * 64}").status_code == 404
    )


def test_unknown_route_and_wrong_method_are_problems(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.delete("/animations")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = client.get("/animations", params={"limit": 0})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


def test_unexpected_errors_are_500_without_internals(client, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(client.app.state.services.store, "list_owned", boom)
    r = client.get("/animations")
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert "secret" not in r.text and r.json()["request_id"] == r.headers["x-request-id"]


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert len(client.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"]) == 16


def test_openapi_documents_every_route_with_examples(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/animations"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"202", "200", "401", "413", "415", "422", "429"} <= set(post["responses"])
    schemas = spec["components"]["schemas"]
    assert "examples" in schemas["AnimationCreate"] and "examples" in schemas["Job"] and "Problem" in schemas
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert op.get("summary"), path


def test_cors_is_off_by_default(client):
    r = client.options(
        "/animations", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers
