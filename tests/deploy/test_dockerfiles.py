"""The images: the API image installs the base package only (no torch, not even transitively), the
worker image a pinned CUDA torch with the engine extras; both run as a non-root user."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from tests.support.manifests import REPO

API = REPO / "docker" / "api.Dockerfile"
WORKER = REPO / "docker" / "worker.Dockerfile"
HEAVY = {"torch", "diffusers", "transformers", "accelerate", "mediapipe", "triton"}


def _instructions(path: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = (REPO / path).read_text()
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages(path: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(path):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _base_dependency_closure() -> set[str]:
    """Every distribution the base install pulls in, walked through installed metadata."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                todo.append(sub)
        for extra in req.extras:  # e.g. uvicorn[standard], celery[redis]
            for line in requires:
                sub = Requirement(line)
                if sub.marker is not None and sub.marker.evaluate({"extra": extra}):
                    todo.append(sub)
    return seen


def test_base_install_pulls_in_no_ml_stack() -> None:
    closure = _base_dependency_closure()
    assert {"fastapi", "celery", "redis", "boto3"} <= closure
    assert not closure & HEAVY, sorted(closure & HEAVY)
    assert not any(name.startswith("nvidia-") for name in closure)


def test_api_image_installs_the_base_package_only() -> None:
    instructions = _instructions("docker/api.Dockerfile")
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "the API image must `pip install .` (no extras)"
    assert "torch" not in runs.replace("! pip show torch", "")
    assert not re.search(r"\.\[[^\]]*\]", runs), "no extras in the API image"
    import tomllib

    base = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0] for d in base}
    heavy = names & {"torch", "diffusers", "transformers", "mediapipe"}
    assert not heavy, "the engine's source is copied for its torch-free leaves; its heavy deps stay out"
    # PyAV (a self-contained wheel) is in: the API probes driving videos (engine.inputs.videoprobe).
    assert "av" in names
    assert "! pip show torch" in runs  # the build itself fails if torch slipped in


def test_api_image_is_slim_non_root_and_healthchecked() -> None:
    stages = _stages("docker/api.Dockerfile")
    assert len(stages) == 2, "build stage + runtime stage"
    text = API.read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim", text)
    runtime = dict(stages[-1])
    assert runtime["USER"].split(":")[0] not in ("root", "0")
    assert "/healthz" in runtime["HEALTHCHECK"]
    assert "poseanimate" in runtime["ENTRYPOINT"] and "serve" in runtime["CMD"]


def test_worker_image_pins_cuda_torch_and_installs_the_engine_extras() -> None:
    text = WORKER.read_text()
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", text)
    runs = " ".join(args for op, args in _instructions("docker/worker.Dockerfile") if op == "RUN")
    assert "['optional-dependencies']['engine']" in runs and "startswith('torch==')" in runs
    assert '".[engine,detect]"' in runs
    assert "TORCH_VERSION" not in text and not re.search(r"torch==\d", text), (
        "the pin lives in pyproject.toml"
    )


def test_the_torch_pin_is_defined_once() -> None:
    import tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["engine"]
    assert [r for r in extra if r.startswith("torch")] == ["torch==2.13.0"]
    makefile = (REPO / "Makefile").read_text()
    assert "pyproject.toml" in makefile.split("TORCH_PIN :=")[1].splitlines()[0]
    assert not re.search(r"torch==\d", makefile)


def test_images_copy_every_package_they_install() -> None:
    import tomllib

    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    names = {p.rstrip("*") for p in packages}
    for dockerfile in ("docker/api.Dockerfile", "docker/worker.Dockerfile"):
        copied = {args.split()[0] for op, args in _instructions(dockerfile) if op == "COPY"}
        assert names <= copied, (dockerfile, names - copied)


def test_worker_image_is_non_root_with_a_model_cache_volume() -> None:
    stages = _stages("docker/worker.Dockerfile")
    assert len(stages) == 2
    runtime = stages[-1]
    ops = dict(runtime)
    assert ops["USER"].split(":")[0] not in ("root", "0")
    assert "/models" in ops["VOLUME"]
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert "HF_HOME=/models/" in env and "POSEANIMATE_MODEL_CACHE_DIR=/models/" in env
    assert '"poseanimate", "worker"' in ops["ENTRYPOINT"]
    assert "9101" in ops["HEALTHCHECK"]


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".run", ".env", "tests"} <= ignored
