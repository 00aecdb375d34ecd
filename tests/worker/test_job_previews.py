"""Every finished job publishes its previews next to the animation: poses.json (the sequence used),
skeleton.mp4 (the conditioning frames) and side_by_side.mp4 ([source | pose | result]); the job view
lists a signed link for each. In-process runner, real Redis, local storage, noop backend."""

import io
import json

import av
import numpy as np
import pytest

from engine.inputs.rules import DEFAULTS
from engine.poses.alignment import bone_lengths
from engine.poses.pose import PoseSequence
from jobs.contract import EXAMPLE_POSES, JobStatus
from jobs.views import job_view
from tests.support import EXAMPLES
from tests.support.jobs import noop_runner, submit


@pytest.fixture
def env(store, redis_srv, tmp_path):
    settings, storage, runner = noop_runner(store, redis_srv.url, tmp_path)
    return settings, store, storage, runner


def _frames(data: bytes) -> list:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def test_a_finished_job_uploads_five_outputs_that_decode_and_agree(env):
    _, store, storage, runner = env
    record = submit(env)
    assert runner.run(record.id) == "succeeded"
    done = store.get(record.id)
    assert set(done.outputs) == {"video", "poster", "poses", "skeleton", "side_by_side"}
    assert done.outputs["poses"] == f"outputs/{record.id}/poses.json"
    n = 1 + DEFAULTS.transition_frames + len(EXAMPLE_POSES["frames"])

    doc = json.loads(storage.get_bytes(done.outputs["poses"]))
    poses = PoseSequence.from_json(doc)
    # The whole sequence used, on the 64x64 output canvas (the example poses are on 512x512).
    assert len(poses) == n == done.num_frames and (doc["width"], doc["height"]) == (64, 64)
    t = DEFAULTS.transition_frames
    assert doc["roles"] == {"source": [0, 1], "transition": [1, 1 + t], "targets": [1 + t, n]}

    video = _frames(storage.get_bytes(done.outputs["video"]))
    skeleton = _frames(storage.get_bytes(done.outputs["skeleton"]))
    side = _frames(storage.get_bytes(done.outputs["side_by_side"]))
    assert len(video) == len(skeleton) == len(side) == n
    assert skeleton[0].size == (64, 64)
    # Three 64-pixel columns and two gutters: [source | pose | result].
    assert side[0].height == 64 and side[0].width >= 3 * 64
    assert max(skeleton[-1].convert("L").getdata()) > 100  # a skeleton is drawn, not a blank frame


def test_the_job_view_lists_a_signed_link_for_each_preview(env):
    _, store, storage, runner = env
    record = submit(env)
    runner.run(record.id)
    view = job_view(store.get(record.id), storage=storage, url_ttl_s=60, base_url="http://api.test/")
    assert view.status is JobStatus.SUCCEEDED and view.output is not None
    links = {
        "poses": view.output.poses_url,
        "skeleton": view.output.skeleton_url,
        "side_by_side": view.output.side_by_side_url,
    }
    for kind, link in links.items():
        assert link is not None and "sig=" in link, kind
        assert f"/outputs/{record.id}/" in link


def test_a_job_recorded_before_previews_still_has_a_view(env):
    _, store, storage, runner = env
    record = submit(env)
    runner.run(record.id)
    old = store.get(record.id)
    old.outputs = {k: v for k, v in old.outputs.items() if k in ("video", "poster")}
    view = job_view(old, storage=storage, url_ttl_s=60, base_url="http://api.test/")
    assert view.output.video_url and view.output.poses_url is None


@pytest.mark.parametrize("retarget", ["scale", "bones"])
def test_the_jobs_retarget_shapes_the_sequence_it_runs_on(env, retarget):
    """``retarget: bones`` gives every target the source pose's bone lengths; ``scale`` (PATA's one
    uniform scale) keeps the driving body's proportions, which differ from the astronaut's."""
    _, store, storage, runner = env
    source = json.loads((EXAMPLES / "astronaut_pose.json").read_text())
    record = submit(env, source_pose=source, retarget=retarget)
    assert store.get(record.id).params["retarget"] == retarget
    assert runner.run(record.id) == "succeeded"
    doc = json.loads(storage.get_bytes(store.get(record.id).outputs["poses"]))
    poses = PoseSequence.from_json(doc)
    start = doc["roles"]["targets"][0]
    lengths = np.array([bone_lengths(poses[i]) for i in range(start, len(poses))])
    ref = bone_lengths(poses[0])
    both = ~np.isnan(lengths) & ~np.isnan(ref)
    error = np.abs(lengths - ref)[both].max()
    if retarget == "bones":
        assert error < 0.01  # pixels: poses.json rounds coordinates
    else:
        assert error > 1.0  # pixels on the 64 px canvas
