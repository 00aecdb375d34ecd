"""The storage-backed inversion cache: shared across worker processes, harmless when storage fails."""

from __future__ import annotations

import json

import pytest
import torch

from engine import AnimateConfig, MemoryInversionCache
from engine.method.pacm import SourceInversion
from jobs.storage import LocalStorage, StorageUnavailable
from tests.support.engine import astronaut_example, tiny_animator
from worker.inversion_cache import StorageInversionCache


def _inversion() -> SourceInversion:
    gen = torch.Generator().manual_seed(0)
    return SourceInversion(
        latents=torch.randn(4, 4, 8, 8, generator=gen),
        embeddings=torch.randn(3, 77, 32, generator=gen),
        reconstruction=torch.randn(4, 8, 8, generator=gen),
        final_losses=[0.5, 0.25, 0.125],
    )


class BrokenStorage:
    def get_bytes(self, key):
        raise StorageUnavailable("down")

    def put_bytes(self, key, data, content_type):
        raise StorageUnavailable("down")


def test_entries_written_by_one_process_are_read_by_another(tmp_path):
    storage = LocalStorage(tmp_path, b"secret")
    StorageInversionCache(storage, MemoryInversionCache()).put("k1", _inversion())
    fresh = StorageInversionCache(storage, MemoryInversionCache())  # another worker: empty memory
    got = fresh.get("k1")
    want = _inversion()
    assert torch.equal(got.latents, want.latents) and torch.equal(got.embeddings, want.embeddings)
    assert torch.equal(got.reconstruction, want.reconstruction) and got.final_losses == want.final_losses
    assert fresh.get("other") is None
    assert (tmp_path / "cache" / "inversions" / "k1.safetensors").is_file()


def test_a_storage_outage_costs_a_miss_not_a_job():
    cache = StorageInversionCache(BrokenStorage(), MemoryInversionCache())
    assert cache.get("k") is None
    cache.put("k", _inversion())  # no exception
    assert cache.get("k") is not None  # still served from memory


def test_a_second_worker_skips_the_inversion_through_storage(tiny_model_dir, tmp_path):
    image, source, targets = astronaut_example(2)
    config = AnimateConfig(num_inference_steps=2, height=64, width=64, transition_frames=0)
    storage = LocalStorage(tmp_path, b"secret")
    results = []
    for _ in range(2):  # two "workers": each its own animator and memory, one storage
        cache = StorageInversionCache(storage, MemoryInversionCache())
        animator = tiny_animator(tiny_model_dir, inversion_cache=cache)
        results.append(animator.animate(image, targets, "an astronaut", source_pose=source, config=config))
    first, second = results
    assert not first.cache_hit and second.cache_hit
    assert second.unet_evals.get("inverting_forward", 0) == 0


@pytest.mark.parametrize("mode", ["off", "memory", "storage"])
def test_the_setting_selects_the_cache(mode, tmp_path):
    from jobs.settings import Settings
    from worker.animators import inversion_cache

    settings = Settings(
        inversion_cache=mode, storage_url=f"file://{tmp_path}", env="development", _env_file=None
    )
    cache = inversion_cache(settings)
    expected = {"off": type(None), "memory": MemoryInversionCache, "storage": StorageInversionCache}[mode]
    assert isinstance(cache, expected)


def test_entries_a_job_used_are_recorded_on_it_and_deleted_with_it(redis_client, tmp_path):
    import uuid

    from jobs.contract import JobStatus
    from jobs.deletion import CACHE_KEYS_FIELD, CURRENT_JOB, delete_job
    from jobs.services import JobServices
    from jobs.settings import Settings
    from jobs.store import JobRecord, JobStore, new_job_id

    store = JobStore(redis_client, f"ic{uuid.uuid4().hex[:6]}")
    record = JobRecord(
        id=new_job_id(), owner="key_a", status=JobStatus.RUNNING, params={}, num_frames=1, created_at=0.0
    )
    store.create(record)
    storage = LocalStorage(tmp_path, b"secret")
    StorageInversionCache(storage, MemoryInversionCache()).put("shared", _inversion())  # another job's
    token = CURRENT_JOB.set((store, record.id))
    try:
        cache = StorageInversionCache(storage, MemoryInversionCache())
        assert cache.get("shared") is not None  # a hit through storage counts
        cache.put("own", _inversion())
        cache.put("own", _inversion())
    finally:
        CURRENT_JOB.reset(token)
    assert json.loads(redis_client.hget(store.job_key(record.id), CACHE_KEYS_FIELD)) == ["shared", "own"]
    # (The job has no webhook: no queue is needed, nothing is counted.)
    delete_job(record, JobServices(Settings(_env_file=None), store, storage, None, lambda outcome: None))
    assert not list((tmp_path / "cache" / "inversions").iterdir())
    # Still running: a bare stub is left for its worker to see the cancel; no cache keys, no owner.
    stub = redis_client.hgetall(store.job_key(record.id))
    assert stub["owner"] == "deleted" and stub["cancel_requested"] == "1" and CACHE_KEYS_FIELD not in stub
