"""The API's OpenAPI document: problem replies, the hand-declared submission body (JSON or
multipart), and the service's limits written into the parameter schemas.

``POST /animations`` reads its body itself (it takes JSON and multipart), so its request schema is
declared here. Every numeric bound a client may hit is published from ``jobs.intake.limits`` — the same
table the server enforces — so the schema's ``minimum``/``maximum`` are exactly what is accepted.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from api.errors import PROBLEM_JSON
from engine.inputs.rules import DEFAULTS
from jobs.contract import AnimationCreate, AnimationParams, PosesCreate, Problem
from jobs.intake.limits import ServiceLimits
from jobs.settings import Settings

# What a model without real weights (the tiny model, the noop backend) is best tried at: a job of
# seconds on a CPU. The paper's 512 px and 50 steps take minutes per frame there.
QUICK_DEFAULTS = {"size": 64, "steps": 4}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries: each status answers a problem+json ``Problem``."""
    return {
        s: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Problem details"}
        for s in statuses
    }


POSES_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PosesCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {
                        "video": {"type": "string", "format": "binary", "description": "the clip"},
                        "fps": {"type": "number"},
                        "start": {"type": "number"},
                        "end": {"type": "number"},
                        "max_frames": {"type": "integer"},
                        "parts": PosesCreate.model_json_schema()["properties"]["parts"],
                    },
                }
            },
        },
    }
}


def _multipart_schema() -> dict[str, Any]:
    fields: dict[str, Any] = {
        "image": {
            "type": "string",
            "format": "binary",
            "description": "PNG, JPEG or WebP (or a URL/data URI as text)",
        },
        "poses": {
            "type": "string",
            "format": "binary",
            "description": "pose JSON file (or JSON text); exactly one of poses and driving_video",
        },
        "driving_video": {
            "type": "string",
            "format": "binary",
            "description": "driving video file: MP4/H.264, WebM/VP9, MOV, animated GIF (or a URL/data URI)",
        },
        "video_start": {"type": "number", "description": "with driving_video: start second"},
        "video_end": {"type": "number", "description": "with driving_video: end second"},
        "audio": {
            "type": "boolean",
            "description": "with driving_video: keep the clip's sound (default: true)",
        },
        "source_pose": {
            "type": "string",
            "format": "binary",
            "description": "one-frame pose JSON (optional)",
        },
        "mask": {"type": "string", "format": "binary", "description": "character mask image (optional)"},
        "prompt": {"type": "string"},
        "subject_words": {"type": "string", "description": "comma-separated"},
        "webhook_url": {"type": "string"},
        "webhook_events": {
            "type": "string",
            "description": "comma-separated: started,progress,completed,failed,canceled",
        },
    }
    for name in ("steps", "transition_frames", "fps", "size", "width", "height", "seed"):
        fields[name] = {"type": "integer"}
    fields["guidance"] = {"type": "number"}
    fields["retarget"] = {"type": "string", "enum": ["scale", "bones"], "description": "default: scale"}
    fields["parts"] = {
        "type": "string",
        "enum": ["body", "body+hands", "body+face", "full"],
        "description": "hands/face drawn for the ControlNet; default: full",
    }
    return {"type": "object", "required": ["image", "prompt"], "properties": fields}


CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AnimationCreate"}},
            "multipart/form-data": {"schema": _multipart_schema()},
        },
    }
}


def _apply_limits(properties: dict[str, Any], limits: ServiceLimits) -> None:
    for name, bound in limits.params.items():
        prop = properties.get(name)
        if prop is None:
            continue
        # Optional knobs are `anyOf: [{type}, {type: null}]`: the bound belongs to the non-null branch.
        target = next((b for b in prop.get("anyOf", []) if b.get("type") != "null"), prop)
        target.update(bound.schema())
    if "prompt" in properties:
        properties["prompt"]["maxLength"] = limits.max_prompt_chars
    if "subject_words" in properties:
        words = properties["subject_words"]
        target = next((b for b in words.get("anyOf", []) if b.get("type") == "array"), words)
        target["maxItems"] = limits.max_subject_words


def served_model(settings: Settings) -> dict[str, Any]:
    """``info.x-served-model``: the model the workers run (as configured: the API loads none) and the
    ``size``/``steps`` that suit it, which the playground starts from."""
    noop, tiny = settings.animator == "noop", settings.model == "tiny"
    name = "noop (no model)" if noop else "tiny (random weights)" if tiny else settings.model
    defaults = dict(QUICK_DEFAULTS) if noop or tiny else {"size": DEFAULTS.size, "steps": DEFAULTS.steps}
    return {"name": name, "random_weights": tiny and not noop, "defaults": defaults}


def install_openapi(app: FastAPI, limits: ServiceLimits, served: dict[str, Any] | None = None) -> None:
    """Publish the submission body and the problem schema under components, the limits in every
    parameter schema, problem+json as every route's 422 (FastAPI documents its own shape), and
    ``served`` (:func:`served_model`) as ``info.x-served-model``."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        # A copy: FastAPI's document shares dicts with CREATE_BODY, and another app may have other limits.
        schema = copy.deepcopy(original())
        if served is not None:
            schema.setdefault("info", {})["x-served-model"] = served
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        body = AnimationCreate.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in body.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components["AnimationCreate"] = body
        components.setdefault(
            "AnimationParams", AnimationParams.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for model in ("AnimationCreate", "AnimationParams"):
            _apply_limits(components[model].get("properties", {}), limits)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                multipart = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
                if multipart:
                    _apply_limits(multipart["schema"].get("properties", {}), limits)
                invalid = operation.get("responses", {}).get("422", {})
                if "application/json" in invalid.get("content", {}):
                    invalid["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
