"""The playground page, its static files and ``/docs`` are served from the API process with no
asset from another origin (they must work on a host without internet)."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

from api.routes.playground import STATIC_DIR, SWAGGER_UI_VERSION

REPO = Path(__file__).resolve().parents[2]
_URL_ATTR = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


def _referenced(html: str) -> list[str]:
    return [a or b for a, b in _URL_ATTR.findall(html)]


def test_docs_reference_only_same_origin_vendored_assets(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "SwaggerUIBundle" in r.text
    refs = _referenced(r.text)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in refs and "/openapi.json" in refs
    assert all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    assert "cdn." not in r.text and "validatorUrl" in r.text
    js = client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 1_000_000 and "sourceMappingURL" not in js.text[-500:]
    assert client.get("/static/vendor/swagger-ui/swagger-ui.css").status_code == 200
    assert SWAGGER_UI_VERSION in (STATIC_DIR / "vendor/swagger-ui/VERSION").read_text()


def test_playground_page_and_its_assets_need_no_key_and_no_other_origin(client):
    page = client.get("/", headers={"Authorization": ""})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    refs = _referenced(page.text)
    assert refs and all(not re.match(r"^(https?:)?//", ref) for ref in refs), refs
    for ref in refs:
        if ref.startswith("static/"):
            assert client.get("/" + ref).status_code == 200, ref
    for name in ("playground.js", "poses.js"):
        text = (STATIC_DIR / name).read_text()
        assert not re.search(r"""fetch\(\s*["'`]https?:""", text) and "cdn" not in text.lower()


def test_static_route_refuses_paths_outside_the_static_folder(client):
    assert client.get("/static/../main.py").status_code == 404
    assert client.get("/static/%2e%2e/main.py").status_code == 404
    r = client.get("/static/nope.js")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_bundled_examples_match_the_repository_examples():
    for name in ("astronaut.jpg", "astronaut_pose.json", "raise_arms.json", "wave_openpose.json"):
        assert filecmp.cmp(STATIC_DIR / "examples" / name, REPO / "examples" / name, shallow=False), name


def test_playground_routes_stay_out_of_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/docs", "/static/{path}"} & set(paths)


def test_the_schema_names_the_served_model_and_the_size_and_steps_that_suit_it(make_client, make_settings):
    """The playground starts from ``info.x-served-model.defaults``: seconds-long jobs for the tiny
    model (and the noop backend), the paper's 512 px and 50 steps for a real one."""
    served = [
        make_client(make_settings(**over)).get("/openapi.json").json()["info"]["x-served-model"]
        for over in ({"model": "tiny"}, {"animator": "noop"}, {"model": "some/sd15-model"})
    ]
    assert served[0] == {
        "name": "tiny (random weights)",
        "random_weights": True,
        "defaults": {"size": 64, "steps": 4},
    }
    assert served[1]["name"] == "noop (no model)" and served[1]["defaults"] == {"size": 64, "steps": 4}
    assert served[2] == {
        "name": "some/sd15-model",
        "random_weights": False,
        "defaults": {"size": 512, "steps": 50},
    }
