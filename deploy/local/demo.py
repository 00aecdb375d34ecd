"""``make demo``: animate the bundled astronaut through the running API and save the MP4.

Submits ``examples/astronaut.jpg`` with the target motion ``examples/raise_arms.json`` and the
image's own pose ``examples/astronaut_pose.json`` (multipart), follows the job's Server-Sent Events,
then downloads the video and the poster through the links in the finished job.

The URL and API key come from the state ``make up`` wrote (``.run/stack.json``), or from
``--url`` / ``--api-key`` for any other deployment. With the tiny random-weight model the job is
kept small (64 px, 2 steps) unless ``--size`` / ``--steps`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def follow(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    """Print progress from ``/events`` until the final ``status`` event; fall back to polling."""
    last = ""
    try:
        with client.stream(
            "GET", f"/animations/{job_id}/events", timeout=httpx.Timeout(10, read=timeout)
        ) as reply:
            reply.raise_for_status()
            event = ""
            for line in reply.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = json.loads(line.split(":", 1)[1])
                    if event == "status":
                        return dict(data)
                    shown = f"{data['status']:>9}  {data.get('stage') or '':<10} {100 * data.get('progress', 0):5.1f}%"
                    if shown != last:
                        print("  " + shown, flush=True)
                        last = shown
    except (httpx.HTTPError, ValueError) as exc:
        print(f"  (event stream ended: {exc}; polling)", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/animations/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(1)
    raise TimeoutError(f"job {job_id} did not finish in {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("RUN_DIR") or REPO / ".run"))
    parser.add_argument("--url", help="API base URL (default: the one `make up` started)")
    parser.add_argument("--api-key", help="API key (default: the one `make up` configured)")
    parser.add_argument("--out", type=Path, help="where to save the MP4 (default: <run-dir>/demo.mp4)")
    parser.add_argument("--size", type=int, help="square size in pixels (default: 512; 64 on the tiny model)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: 50; 2 on the tiny model)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job")
    args = parser.parse_args(argv)

    state: dict[str, Any] = {}
    state_file = args.run_dir / "stack.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
    url = args.url or state.get("api_url")
    key = args.api_key or state.get("api_key")
    if not url or not key:
        print(
            "error: no running stack found: run `make up` first (or pass --url and --api-key)",
            file=sys.stderr,
        )
        return 1
    tiny = bool(state.get("random_weights")) and not args.url
    size = args.size or (64 if tiny else None)
    steps = args.steps or (2 if tiny else None)
    out = (args.out or args.run_dir / "demo.mp4").resolve()

    fields = {"prompt": "a photo of an astronaut", "subject_words": "astronaut"}
    if size:
        fields["size"] = str(size)
    if steps:
        fields["steps"] = str(steps)
    files = {
        "image": ("astronaut.jpg", (EXAMPLES / "astronaut.jpg").read_bytes(), "image/jpeg"),
        "poses": ("raise_arms.json", (EXAMPLES / "raise_arms.json").read_bytes(), "application/json"),
        "source_pose": (
            "astronaut_pose.json",
            (EXAMPLES / "astronaut_pose.json").read_bytes(),
            "application/json",
        ),
    }
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        try:
            reply = client.post("/animations", data=fields, files=files)
        except httpx.HTTPError as exc:
            print(f"error: cannot reach the API at {url}: {exc} (is `make up` running?)", file=sys.stderr)
            return 1
        if reply.status_code != 202:
            print(f"error: submission refused ({reply.status_code}): {reply.text}", file=sys.stderr)
            return 1
        job = reply.json()
        settings = (
            ", ".join(f"{k}={v}" for k, v in fields.items() if k in ("size", "steps")) or "paper defaults"
        )
        print(
            f"submitted {job['id']} ({job['num_frames']} frames, {settings}); following {url}/animations/{job['id']}/events"
        )
        job = follow(client, job["id"], args.timeout)
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            print(f"error: job {job['status']}: {error.get('code')}: {error.get('message')}", file=sys.stderr)
            return 1
        out.parent.mkdir(parents=True, exist_ok=True)
        poster = out.with_name(out.stem + "-poster.png")
        for link, path in ((job["output"]["video_url"], out), (job["output"]["poster_url"], poster)):
            # The signed (or presigned S3) link is the credential: no API key goes with it.
            download = httpx.get(httpx.URL(url).join(link), timeout=120, follow_redirects=True)
            download.raise_for_status()
            path.write_bytes(download.content)
    model = job.get("model") or {}
    timings = ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in job.get("timings", {}).items())
    print(f"done: {job['num_frames']} frames by {model.get('name', '?')}; {timings}")
    if model.get("random_weights"):
        print("note: the tiny RANDOM-WEIGHT model made this video: it is noise, not an astronaut")
    print(f"saved {out} ({out.stat().st_size} bytes) and {poster}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
