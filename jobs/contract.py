"""The job contract shared by the API and the workers: statuses, request, job, progress and errors.

Torch-free and import-light: the slim API image imports it. One status enum with ``is_terminal()``
and one job envelope (id, status, params, output, error, timings, timestamps) everywhere: in HTTP
replies, Server-Sent Events and webhook payloads.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PartsName = Literal["body", "body+hands", "body+face", "full"]
"""What of a whole-body pose a job conditions on, or ``POST /poses`` extracts."""


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class Stage(StrEnum):
    """What a job is doing; the engine reports inverting..encoding. ``extracting_poses``: a job
    submitted with a driving video, still queued, while an io worker extracts its poses."""

    QUEUED = "queued"
    EXTRACTING_POSES = "extracting_poses"
    LOADING = "loading"
    INVERTING = "inverting"
    OPTIMIZING = "optimizing"
    SAMPLING = "sampling"
    ENCODING = "encoding"
    UPLOADING = "uploading"
    DONE = "done"


class ErrorCode(StrEnum):
    """Stable codes of a failed job (``error.code``)."""

    INVALID_INPUT = "invalid_input"
    GPU_OUT_OF_MEMORY = "gpu_out_of_memory"
    WORKER_LOST = "worker_lost"
    TIMEOUT = "timeout"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    MODEL_UNAVAILABLE = "model_unavailable"
    QUEUE_UNAVAILABLE = "queue_unavailable"
    INTERNAL_ERROR = "internal_error"


class WebhookEvent(StrEnum):
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    DELETED = "deleted"  # always sent to a job's webhook when it is deleted (data: its id only)

    @property
    def type(self) -> str:
        return f"animation.{self.value}"


DEFAULT_WEBHOOK_EVENTS = (WebhookEvent.COMPLETED, WebhookEvent.FAILED, WebhookEvent.CANCELED)

# A 2-frame compact pose sequence, used as the OpenAPI example.
_EXAMPLE_FRAME = [
    [256, 100, 1],
    [256, 150, 1],
    [216, 150, 1],
    [196, 210, 1],
    [186, 270, 1],
    [296, 150, 1],
    [316, 210, 1],
    [326, 270, 1],
    [231, 280, 1],
    [226, 370, 1],
    [221, 460, 1],
    [281, 280, 1],
    [286, 370, 1],
    [291, 460, 1],
    [246, 90, 1],
    [266, 90, 1],
    [236, 95, 1],
    [276, 95, 1],
]
EXAMPLE_POSES: dict[str, Any] = {"width": 512, "height": 512, "frames": [_EXAMPLE_FRAME, _EXAMPLE_FRAME]}


class AnimationParams(BaseModel):
    """Generation knobs. Left out, a knob takes the engine's paper default; a job's view shows the
    value it runs with. Numeric bounds are the service's limits table (``jobs.intake.limits``): the API
    enforces them and writes them into this schema's OpenAPI ``minimum``/``maximum``."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        default=...,
        description="What the character is; the engine conditions every frame on it. Not blank.",
        examples=["a photo of an astronaut, standing in the street"],
    )
    subject_words: list[str] | None = Field(
        default=None,
        description="Words of the prompt naming the character (for the mask); each must occur in it.",
        examples=[["astronaut"]],
    )
    steps: int | None = Field(default=None, description="DDIM steps T (paper: 50).", examples=[50])
    guidance: float | None = Field(default=None, description="CFG scale w (paper: 7.5).", examples=[7.5])
    transition_frames: int | None = Field(
        default=None, description="PATA transition frames t between the source and the first target pose."
    )
    fps: int | None = Field(default=None, description="Frames per second of the MP4.")
    size: int | None = Field(default=None, description="Square generation size, pixels (paper: 512).")
    width: int | None = Field(default=None, description="Generation width, pixels; default: size.")
    height: int | None = Field(default=None, description="Generation height, pixels; default: size.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    parts: PartsName | None = Field(
        default=None,
        description=(
            "What of whole-body poses conditions the ControlNet and is drawn in the previews: `full`"
            " (default: body, hands and face, as the OpenPose ControlNet's training images), `body+hands`,"
            " `body+face` or `body` (body-only control). Parts the poses do not carry are not drawn."
        ),
    )
    retarget: Literal["scale", "bones"] | None = Field(
        default=None,
        description=(
            "How the driving poses are fitted to the character: `scale` (PATA's one uniform scale and"
            " shift, the paper's; default) or `bones` (also give every driving bone the character's"
            " length from the source pose, keeping each bone's direction: for a driving body of other"
            " proportions)."
        ),
    )
    audio: bool | None = Field(
        default=None,
        description=(
            "With driving_video: keep the clip's sound in `animation.mp4` and `side_by_side.mp4` (AAC,"
            " default true). The lead-in (source frame and transition) plays over silence and each driven"
            " frame with the sound the clip had when it was sampled. A clip without audio, or whose audio"
            " cannot be used (noted in the job's `notes`), gives a silent video; false leaves it out."
        ),
    )
    video_start: float | None = Field(
        default=None, ge=0, description="With driving_video: start at this second of the video."
    )
    video_end: float | None = Field(
        default=None, gt=0, description="With driving_video: stop at this second of the video."
    )


class AnimationCreate(AnimationParams):
    """JSON body of ``POST /animations``. Multipart takes the same names as form fields/files."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "image": "https://example.com/character.png",
                    "poses": EXAMPLE_POSES,
                    "prompt": "a photo of an astronaut, standing in the street",
                    "steps": 50,
                    "fps": 8,
                    "webhook_url": "https://app.example.com/hooks/poseanimate",
                    "webhook_events": ["completed", "failed"],
                }
            ]
        },
    )

    image: str = Field(
        default=..., description="https URL or base64 data URI (PNG, JPEG or WebP) of the character image."
    )
    poses: Any = Field(
        default=None,
        description="Target poses: OpenPose JSON (a frame or a list of frames) or compact "
        '{"width","height","frames":[[[x,y,c]*18],...]}. Exactly one of poses and driving_video.',
    )
    driving_video: str | None = Field(
        default=None,
        description="Instead of poses: a driving video (MP4/H.264, WebM/VP9, MOV, animated GIF) as an "
        "https URL or data URI (or a multipart file); its poses are extracted at the job's fps on an io "
        "worker (stage extracting_poses) before the job reaches a GPU.",
    )
    source_pose: Any | None = Field(
        default=None, description="The image's own pose (one frame); detected if absent."
    )
    mask: str | None = Field(
        default=None, description="Character mask image (URL or data URI); white = character."
    )
    webhook_url: str | None = Field(
        default=None, max_length=2048, description="http(s) URL that receives events."
    )
    webhook_events: list[WebhookEvent] = Field(default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS))


class JobError(BaseModel):
    code: str = Field(..., examples=["gpu_out_of_memory"])
    message: str = Field(..., examples=["The GPU ran out of memory; try fewer frames or a smaller size."])


class PosesCreate(BaseModel):
    """JSON body of ``POST /poses`` (multipart: a ``video`` file and the same names as fields)."""

    model_config = ConfigDict(extra="forbid")

    video: str = Field(
        default=..., description="https URL or data URI of the clip (MP4/H.264, WebM/VP9, MOV, animated GIF)."
    )
    fps: float | None = Field(default=None, gt=0, le=60, description="Sample rate; default: the clip's own.")
    start: float | None = Field(default=None, ge=0, description="Start at this second.")
    end: float | None = Field(default=None, gt=0, description="Stop at this second.")
    max_frames: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Keep the first max_frames sampled frames of a longer clip (the report says `trimmed`);"
            " at most MAX_FRAMES. Without it, a clip giving more than MAX_FRAMES frames is refused (413)."
        ),
    )
    parts: PartsName | None = Field(
        default=None,
        description=(
            "What of the person to extract: `full` (default: body, the two hands (21 points each) and"
            " the face (70 points) where MediaPipe Holistic finds them), `body+hands`, `body+face` or"
            " `body` (BlazePose alone, faster). Hands and face get the body's gap bridging, smoothing"
            " and no-person handling; the report counts `frames_with_hands` and `frames_with_face`."
        ),
    )


class PoseExtraction(BaseModel):
    """A pose extraction: ``POST /poses`` and ``GET /poses/{id}``."""

    id: str
    object: Literal["pose_extraction"] = "pose_extraction"
    status: Literal["queued", "succeeded", "failed"]
    poses: dict[str, Any] | None = Field(
        default=None, description="Compact pose JSON on the video's canvas, ready for POST /animations."
    )
    report: dict[str, Any] | None = Field(
        default=None, description="Frames sampled, decoded, without a person, bridged, dropped; fps; size."
    )
    skeleton_mp4: str | None = Field(
        default=None, description="The skeleton preview: an H.264 MP4 as a base64 data URI (at most 256 px)."
    )
    error: JobError | None = None


class JobOutput(BaseModel):
    video_url: str = Field(..., description="H.264 MP4; a presigned/signed link that expires.")
    poster_url: str = Field(..., description="PNG of the first frame.")
    poses_url: str | None = Field(
        default=None,
        description="poses.json: the whole pose sequence used (source pose, transition, aligned targets) "
        "on the output canvas, compact form with frame roles. Null only for jobs from before previews.",
    )
    skeleton_url: str | None = Field(
        default=None, description="skeleton.mp4: the ControlNet conditioning frames (OpenPose skeletons)."
    )
    side_by_side_url: str | None = Field(
        default=None, description="side_by_side.mp4: [source image | skeleton | result] per frame."
    )
    expires_at: datetime
    files_expire_at: datetime | None = Field(
        default=None,
        description="When the output files themselves are deleted (POSEANIMATE_OUTPUT_RETENTION_S after"
        " the job ended); links stop working then at the latest. DELETE removes them sooner.",
    )


class WebhookAttempt(BaseModel):
    webhook_id: str
    event: str
    attempt: int
    at: datetime
    status_code: int | None = None
    result: Literal["delivered", "retrying", "failed", "gone", "refused"]
    error: str | None = None
    duration_s: float | None = None


class WebhookInfo(BaseModel):
    url: str
    events: list[str]
    deliveries: list[WebhookAttempt] = Field(default_factory=list)


class ModelInfo(BaseModel):
    name: str = Field(..., description="Model that produced the output (set once a worker took the job).")
    random_weights: bool = Field(
        default=False, description="True for the tiny smoke-test model: the output is noise."
    )


class MemoryStagePlan(BaseModel):
    """One stage of a job's memory plan (``inverting``, ``optimizing``, ``sampling``, ``encoding``)."""

    chunk: int = Field(..., ge=1, description="Frames per chunk planned (the largest of `chunks`).")
    chunks: list[int] = Field(default_factory=list, description="Frames of each chunk, balanced.")
    checkpointing: bool = False
    offloaded: list[str] = Field(
        default_factory=list, description="Modules kept in host memory during the stage (weight offload)."
    )
    predicted_peak_bytes: int | None = Field(
        default=None,
        description="The memory model's peak for the stage (above the resident weights on a GPU).",
    )
    actual_peak_bytes: int | None = Field(
        default=None,
        description="Measured on CUDA (`torch.cuda.max_memory_allocated`, same base); null on CPU.",
    )


class MemoryPlan(BaseModel):
    """How the worker fitted the job in its device's memory (docs/performance.md, Memory)."""

    source: str = Field(
        ...,
        description="`memory model` (planned from the GPU's free memory), `budget`, `config` (a fixed chunk)"
        " or `cpu` (a CPU worker does not plan: one chunk size).",
    )
    fits: bool | None = Field(default=None, description="The plan fits the memory it was given.")
    offload: bool = Field(default=False, description="Weights offloaded between stages.")
    checkpointing: bool = False
    predicted_peak_bytes: int | None = None
    available_bytes: int | None = Field(default=None, description="Memory the plan was made for.")
    oom_backoffs: int = Field(default=0, ge=0, description="Out-of-memory halvings of a chunk (safety net).")
    stages: dict[str, MemoryStagePlan] = Field(default_factory=dict)


class FrameTiming(BaseModel):
    """One output frame: when it is shown and what it shows."""

    index: int = Field(..., ge=0)
    time: float = Field(..., ge=0, description="Output seconds: index / fps, exactly.")
    role: Literal["source", "transition", "driven"]
    clip_time: float | None = Field(
        default=None, description="Driven frames of a driving_video: the clip second the pose was sampled at."
    )


class Job(BaseModel):
    """The job envelope: what ``GET /animations/{id}``, SSE and webhooks carry."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "anim_01JD8X3K4M5N6P7Q8R9S0T1V2W",
                    "object": "animation",
                    "status": "running",
                    "stage": "sampling",
                    "progress": 0.62,
                    "queue_position": None,
                    "attempts": 1,
                    "created_at": "2026-11-25T10:00:00Z",
                    "started_at": "2026-11-25T10:00:03Z",
                    "finished_at": None,
                    "params": {"prompt": "a photo of an astronaut", "steps": 50, "fps": 8, "size": 512},
                    "num_frames": 16,
                    "timings": {"inverting": 4.2, "optimizing": 31.0},
                    "error": None,
                    "output": None,
                }
            ]
        }
    )

    id: str
    object: Literal["animation"] = "animation"
    status: JobStatus
    stage: Stage | None = None
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    queue_position: int | None = Field(default=None, ge=1, description="1 = next to run; only while queued.")
    attempts: int = 0
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    params: AnimationParams
    num_frames: int = Field(..., ge=1)
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    unet_evals: dict[str, int] = Field(default_factory=dict)
    memory_plan: MemoryPlan | None = Field(
        default=None, description="Chunks, checkpointing, offload and peaks the job ran with (once it ran)."
    )
    model: ModelInfo | None = None
    error: JobError | None = None
    output: JobOutput | None = None
    webhook: WebhookInfo | None = None
    timeline: list[FrameTiming] | None = Field(
        default=None,
        description=(
            "Every output frame's role (`source`, then `transition_frames` of `transition`, then `driven`)"
            " and output time; with a driving_video, each driven frame's clip time (once its poses are"
            " extracted). See docs/service.md (Timing)."
        ),
    )
    notes: list[str] = Field(
        default_factory=list,
        description="What the job did differently from what was asked, e.g. audio left out.",
    )


class JobList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [], "next_cursor": "anim_01JD8X3K4M5N6P7Q8R9S0T1V2W"}]}
    )

    data: list[Job]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next (older) page.")


class ProgressEvent(BaseModel):
    """Published on the job's Redis channel and sent as an SSE ``progress`` event."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "anim_01JD8X3K4M5N6P7Q8R9S0T1V2W",
                    "status": "running",
                    "stage": "sampling",
                    "progress": 0.62,
                }
            ]
        }
    )

    id: str
    status: JobStatus
    stage: Stage | None = None
    progress: float = Field(default=0.0, ge=0.0, le=1.0)


class Problem(BaseModel):
    """RFC 9457 problem details; ``code`` is stable and machine-readable."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://poseanimate.dev/problems/pose_keypoint_count",
                    "title": "Invalid pose",
                    "status": 422,
                    "detail": "poses frame 3 has 17 keypoints; expected 18 (COCO-18 order)",
                    "code": "pose_keypoint_count",
                    "request_id": "b7c3b0d9f2a64e61",
                }
            ]
        },
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    code: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None
