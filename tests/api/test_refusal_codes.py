"""One refusal type: every code with its HTTP status, each declared once, each status decided by the
one handler (from the code tables), and the docs' error table equal to the same list."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import api.main  # noqa: F401  (imports every code table the API answers with)
from api.errors import ApiError
from engine.inputs import errors
from engine.inputs.errors import CODES, Refusal, declare_codes, status_of

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("api", "jobs", "engine", "worker", "cli")

# Every code the service refuses with, and its status: a change here is a change of the API.
EXPECTED = {
    400: "bad_request malformed_json malformed_multipart",
    401: "unauthorized",
    403: "link_invalid",
    404: "content_expired not_found",
    405: "method_not_allowed",
    409: "idempotency_in_progress inputs_not_kept job_already_finished video_not_ready",
    413: (
        "audio_too_large body_too_large image_too_large image_too_many_pixels job_too_large_for_workers"
        " video_too_large video_too_long"
    ),
    415: "image_unsupported_format unsupported_media_type video_type_unsupported",
    422: (
        "audio_unreadable idempotency_key_reused image_ambiguous image_corrupt image_data_uri_invalid "
        "image_reference_invalid image_too_small invalid_input model_not_found seconds_invalid size_ambiguous "
        "size_invalid mask_empty mask_reference_invalid motion_ambiguous "
        "motion_missing no_person parameter_out_of_range pose_canvas_inconsistent "
        "pose_canvas_invalid pose_canvas_missing pose_confidence pose_degenerate pose_empty_frame "
        "pose_frame_count pose_keypoint_count pose_malformed pose_not_finite pose_not_numeric "
        "pose_out_of_bounds pose_too_large prompt_blank prompt_too_long subject_not_in_prompt "
        "too_many_frames url_address_not_allowed url_credentials_not_allowed url_fetch_failed "
        "url_fetch_timeout url_invalid url_scheme_not_allowed url_too_many_redirects "
        "url_unresolvable validation_error video_data_uri_invalid video_invalid "
        "video_options_without_video video_reference_invalid video_unreadable "
        "webhook_events_without_url"
    ),
    429: "quota_exceeded rate_limited too_many_streams",
    431: "headers_too_large",
    500: "internal_error",
    503: "extraction_lost not_ready queue_unavailable service_unavailable storage_unavailable",
}
EXPECTED_CODES = {code: status for status, codes in EXPECTED.items() for code in codes.split()}

# The refusal classes, and where each takes its code: a positional index, or the ``code`` keyword.
CODE_ARG = {
    "Refusal": "code",
    "CodedRefusal": 0,
    "InvalidInput": "code",
    "ExtractionError": "code",
    "VideoRefused": "code",
    "PoseError": 0,
    "ImageValidationError": 0,
    "UnsafeURLError": 0,
    "FetchError": 0,
    "ApiError": 0,
    "problem_response": 0,
}


def product_sources() -> list[tuple[Path, ast.Module]]:
    files = sorted(p for pkg in PRODUCT for p in (REPO / pkg).rglob("*.py"))
    return [(p, ast.parse(p.read_text(), str(p))) for p in files]


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else None


def refusal_calls() -> list[tuple[Path, ast.Call, str]]:
    out = []
    for path, tree in product_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (name := _name(node.func)) in CODE_ARG:
                out.append((path, node, name))
    return out


def refusal_classes() -> list[tuple[Path, ast.ClassDef]]:
    """Every class of the product packages deriving from a refusal class (by name, to a fixpoint)."""
    classes = [
        (path, node)
        for path, tree in product_sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]
    names = {"Refusal"}
    while True:
        found = {node.name for _, node in classes if any(_name(b) in names for b in node.bases)}
        if found <= names:
            return [(path, node) for path, node in classes if node.name in names]
        names |= found


def test_every_code_has_its_one_status():
    assert dict(CODES) == EXPECTED_CODES
    for code, status in EXPECTED_CODES.items():
        assert status_of(code) == status


def test_every_refusal_subclasses_the_one_base():
    from engine.inputs.poseformat import PoseError
    from engine.inputs.videoprobe import ExtractionError, VideoTooLarge, VideoTooLong, VideoUnreadable
    from jobs.intake.images import ImageValidationError
    from jobs.intake.sources import VideoRefused
    from jobs.intake.ssrf import FetchError, UnsafeURLError

    classes = [PoseError, ExtractionError, VideoTooLarge, VideoTooLong, VideoUnreadable]
    classes += [ImageValidationError, VideoRefused, FetchError, UnsafeURLError, ApiError, errors.InvalidInput]
    assert all(issubclass(cls, Refusal) for cls in classes)
    declared = {node.name for _, node in refusal_classes()}
    assert {cls.__name__ for cls in classes} | {"NoPersonFound", "BodyTooLarge"} <= declared
    assert not {name for _, node in refusal_classes() for name in [node.name] if "status" in _assigned(node)}
    assert VideoTooLong("x").status == 413 and PoseError("pose_malformed", "x").status == 422
    assert ApiError("rate_limited").status == 429 and FetchError("video_too_large", "x").status == 413


def _assigned(node: ast.ClassDef) -> set[str]:
    """Names a class body or its methods assign on the class or ``self``."""
    out = set()
    for sub in ast.walk(node):
        for target in sub.targets if isinstance(sub, ast.Assign) else []:
            if (name := _name(target)) is not None:
                out.add(name)
    return out


def test_a_code_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        declare_codes({"not_found": 404}, owner="tests.elsewhere")
    assert errors.declared_by("not_found") == "api.errors"


def test_each_code_is_declared_in_one_table_of_the_source():
    """Scanning the source finds the tables of modules no test imported too."""
    seen: dict[str, list[str]] = {}
    for path, tree in product_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) == "declare_codes":
                table = node.args[0]
                keys = table.keys if isinstance(table, ast.Dict) else []
                for key in keys:
                    assert isinstance(key, ast.Constant), f"{path}: a code table key is not a literal"
                    seen.setdefault(key.value, []).append(str(path.relative_to(REPO)))
    twice = {code: where for code, where in seen.items() if len(where) > 1}
    assert not twice, twice


def test_every_code_a_refusal_is_raised_with_is_declared():
    codes = []
    for path, call, name in refusal_calls():
        where = CODE_ARG[name]
        if isinstance(where, int):
            arg = call.args[where] if len(call.args) > where else None
        else:
            arg = next((k.value for k in call.keywords if k.arg == where), None)
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            codes.append(arg.value)
            assert arg.value in CODES, f"{path}:{call.lineno}: {arg.value!r} is not declared"
    for path, node in refusal_classes():  # class-level codes (VideoTooLong.code = "video_too_long")
        for stmt in node.body:
            if isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if [_name(t) for t in targets] == ["code"]:
                    assert isinstance(stmt.value, ast.Constant) and stmt.value.value in CODES, path
                    codes.append(stmt.value.value)
    assert len(set(codes)) > 40


def test_no_status_is_decided_outside_the_handler():
    """A refusal carries no status of its own; only the framework's HTTP errors (the handler's
    ``http_error``) pass their given status to ``problem_response``."""
    for path, call, name in refusal_calls():
        rel = path.relative_to(REPO)
        assert not any(isinstance(a, ast.Constant) and isinstance(a.value, int) for a in call.args), (
            f"{rel}:{call.lineno}: {name} given an HTTP status"
        )
        if any(k.arg == "status" for k in call.keywords):
            assert (str(rel), name) == ("api/errors.py", "problem_response"), f"{rel}:{call.lineno}"
    for path, tree in product_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in ("HTTPException", "JSONResponse"):
                assert path.relative_to(REPO) == Path("api/errors.py"), f"{path}:{node.lineno}"


def docs_error_table() -> dict[str, int]:
    text = (REPO / "docs" / "service.md").read_text()
    section = text[text.index("| Status | `code` |") :]
    table = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        status, codes = line.strip("|").split("|", 1)
        for code in re.findall(r"`([a-z0-9_]+)`", re.sub(r"\([^)]*\)", "", codes)):  # not the notes
            assert code not in table, f"docs/service.md lists {code} twice"
            table[code] = int(status)
    return table


def test_the_docs_error_table_is_the_code_tables():
    assert docs_error_table() == dict(CODES)
