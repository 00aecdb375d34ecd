"""The Redis job store on a real redis-server: records, transitions, lock, quota, idempotency, rate limits."""

import threading
import time

from jobs.contract import ErrorCode, JobStatus
from jobs.store import JobRecord, JobStore, new_job_id, owner_id_for_key


def make(store: JobStore, owner="key_a", **kw) -> JobRecord:
    record = JobRecord(
        id=new_job_id(),
        owner=owner,
        status=JobStatus.QUEUED,
        params={"prompt": "p", "fps": 8, "size": 64},
        num_frames=2,
        created_at=time.time(),
        **kw,
    )
    store.create(record)
    return record


def test_job_ids_in_the_same_millisecond_are_not_guessable_from_each_other():
    # Monotonic ULIDs made a neighbour's id (and storage keys) one's own plus one (issue 10).
    ids = [new_job_id(now=1000.0) for _ in range(200)]
    assert len(set(ids)) == 200 and len({i[5:15] for i in ids}) == 1  # one time prefix
    assert ids != sorted(ids)  # random order within the millisecond: no increment
    decoded = ["".join(i[15:]) for i in ids]
    assert len({d[-4:] for d in decoded}) > 150, "the tail is fresh randomness, not a counter"


def test_job_ids_are_unique_and_sort_by_creation_time():
    ids = [new_job_id(now=1000.0 + i) for i in range(50)]
    assert (
        ids == sorted(ids)
        and len(set(ids)) == 50
        and all(i.startswith("anim_") and len(i) == 31 for i in ids)
    )


def test_owner_id_hides_the_api_key():
    owner = owner_id_for_key("sk-secret")
    assert owner.startswith("key_") and "secret" not in owner and owner == owner_id_for_key("sk-secret")


def test_record_round_trips_through_the_hash(store):
    record = make(
        store, webhook_url="https://x.example/h", webhook_events=["completed"], inputs=["image.png"]
    )
    assert store.get(record.id) == record


def test_other_owner_sees_nothing(store):
    record = make(store, owner="key_a")
    assert store.get_owned(record.id, "key_a") is not None
    assert store.get_owned(record.id, "key_b") is None
    assert store.get_owned("anim_doesnotexist", "key_a") is None


def test_queue_position_counts_from_one_and_leaves_when_started(store):
    a, b, c = (make(store) for _ in range(3))
    assert [store.queue_position(j.id) for j in (a, b, c)] == [1, 2, 3]
    assert store.start_attempt(a.id, 3, "noop", False).outcome == "started"
    assert store.queue_position(a.id) is None and store.queue_position(c.id) == 2
    assert store.queue_depth() == 2


def test_start_counts_attempts_and_caps_them(store):
    job = make(store)
    assert [store.start_attempt(job.id, 2, "m", False).attempts for _ in range(2)] == [1, 2]
    result = store.start_attempt(job.id, 2, "m", False)
    assert result.outcome == "exhausted" and result.attempts == 2
    assert store.fail(job.id, ErrorCode.WORKER_LOST, "lost") == ("ok", "failed")
    assert store.get(job.id).error_code == "worker_lost"


def test_finished_job_is_never_started_again(store):
    job = make(store)
    store.start_attempt(job.id, 3, "m", False)
    assert store.transition(job.id, JobStatus.SUCCEEDED, outputs={"video": "v", "poster": "p"}) == (
        "ok",
        "succeeded",
    )
    assert store.start_attempt(job.id, 3, "m", False).outcome == "finished"
    assert store.transition(job.id, JobStatus.FAILED) == ("refused", "succeeded")


def test_terminal_transition_sets_ttl_and_frees_the_quota_slot(store):
    job = make(store)
    assert store.reserve_slot(job.owner, job.id, 5)
    store.start_attempt(job.id, 3, "m", False)
    store.transition(job.id, JobStatus.FAILED, error_code="timeout")
    assert 0 < store.r.ttl(store.job_key(job.id)) <= 3600
    assert store.r.zcard(store.active_key(job.owner)) == 0


def test_cancel_of_queued_job_is_immediate_and_final(store):
    job = make(store)
    assert store.request_cancel(job.id) == "canceled"
    record = store.get(job.id)
    assert record.status is JobStatus.CANCELED and record.finished_at is not None
    assert store.start_attempt(job.id, 3, "m", False).outcome == "finished"
    assert store.request_cancel(job.id) == "terminal"


def test_cancel_of_running_job_is_a_request_that_wins_over_success(store):
    job = make(store)
    store.start_attempt(job.id, 3, "m", False)
    assert store.request_cancel(job.id) == "requested"
    assert store.is_cancel_requested(job.id)
    assert store.transition(job.id, JobStatus.SUCCEEDED, cancel_wins=True, outputs={"video": "v"}) == (
        "ok",
        "canceled",
    )
    assert store.get(job.id).outputs == {}


def test_redelivered_copy_of_a_canceled_queued_job_sees_cancel(store):
    job = make(store)
    store.r.hset(store.job_key(job.id), "cancel_requested", "1")
    assert store.start_attempt(job.id, 3, "m", False).outcome == "cancel"


def test_job_lock_admits_one_holder_and_only_the_holder_releases_it(store):
    assert store.try_lock("j", "t1", 5)
    assert not store.try_lock("j", "t2", 5)
    assert not store.refresh_lock("j", "t2", 5)
    store.release_lock("j", "t2")
    assert not store.try_lock("j", "t3", 5)
    assert store.refresh_lock("j", "t1", 5)
    store.release_lock("j", "t1")
    assert store.try_lock("j", "t3", 5)


def test_job_lock_expires_when_its_holder_stops_refreshing(store):
    assert store.try_lock("j", "t1", 0.2)
    time.sleep(0.3)
    assert store.try_lock("j", "t2", 5)


def test_quota_refuses_beyond_max_active_and_frees_slots_of_finished_jobs(store):
    jobs = [make(store) for _ in range(3)]
    assert store.reserve_slot("key_a", jobs[0].id, 2)
    assert store.reserve_slot("key_a", jobs[1].id, 2)
    assert not store.reserve_slot("key_a", jobs[2].id, 2)
    store.request_cancel(jobs[0].id)
    assert store.reserve_slot("key_a", jobs[2].id, 2)


def test_quota_slot_of_a_job_never_created_is_reclaimed(store):
    assert store.reserve_slot("key_a", "anim_ghost", 1, stale_after_s=0.1)
    assert not store.reserve_slot("key_a", "anim_x", 1, stale_after_s=0.1)
    time.sleep(0.2)
    assert store.reserve_slot("key_a", "anim_x", 1, stale_after_s=0.1)


def test_idempotency_claim_is_won_once_under_concurrency(store):
    results = []

    def claim(i):
        results.append((i, store.claim_idempotency("key_a", "idem-1", f"anim_{i}", "h", 60)))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, existing in results if existing is None]
    assert len(winners) == 1
    assert all(
        existing == {"job_id": f"anim_{winners[0]}", "hash": "h"} for _, existing in results if existing
    )


def test_idempotency_release_only_by_the_claimer(store):
    store.claim_idempotency("key_a", "k", "anim_1", "h", 60)
    store.release_idempotency("key_a", "k", "anim_2")
    assert store.claim_idempotency("key_a", "k", "anim_3", "h", 60) == {"job_id": "anim_1", "hash": "h"}
    store.release_idempotency("key_a", "k", "anim_1")
    assert store.claim_idempotency("key_a", "k", "anim_3", "h", 60) is None


def test_listing_is_newest_first_with_a_cursor_and_skips_expired_jobs(store):
    jobs = []
    for _ in range(5):  # ids sort by creation time to the millisecond (random within one)
        jobs.append(make(store))
        time.sleep(0.002)
    store.r.delete(store.job_key(jobs[2].id))  # as if its TTL ran out
    page1, cursor = store.list_owned("key_a", 2)
    page2, cursor2 = store.list_owned("key_a", 2, cursor)
    assert [j.id for j in page1 + page2] == [jobs[4].id, jobs[3].id, jobs[1].id, jobs[0].id]
    assert cursor2 is None
    assert store.list_owned("key_b", 2) == ([], None)


def test_progress_updates_only_a_running_job(store):
    job = make(store)
    store.update_progress(job.id, "sampling", 0.5)
    assert store.get(job.id).stage == "queued"
    store.start_attempt(job.id, 3, "m", False)
    store.update_progress(job.id, "sampling", 0.5, timings={"inverting": 1.5})
    record = store.get(job.id)
    assert (record.stage, record.progress, record.timings) == ("sampling", 0.5, {"inverting": 1.5})


def test_progress_is_published_on_the_job_channel(store):
    job = make(store)
    pubsub = store.r.pubsub()
    pubsub.subscribe(store.channel(job.id))
    pubsub.get_message(timeout=1)
    store.start_attempt(job.id, 3, "m", False)
    store.update_progress(job.id, "sampling", 0.25)
    messages = [pubsub.get_message(timeout=1) for _ in range(2)]
    assert '"progress":0.25' in messages[1]["data"] and '"status":"running"' in messages[0]["data"]
    pubsub.close()


def test_rate_limit_allows_a_burst_then_says_when_to_retry(store):
    decisions = [store.rate_limit("submit", "key_a", 3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 0 < decisions[-1].retry_after_s <= 20
    assert store.rate_limit("submit", "key_b", 3).allowed  # limits are per key


def test_rate_limit_refills_over_time(store):
    # 60/min = one per second: the burst of 60 is spent well inside that second, even on a busy CPU.
    assert store.rate_limit("req", "key_a", 60).allowed
    for _ in range(59):
        store.rate_limit("req", "key_a", 60)
    refused = store.rate_limit("req", "key_a", 60)
    assert not refused.allowed and 0 < refused.retry_after_s <= 1.0
    time.sleep(refused.retry_after_s + 0.05)
    assert store.rate_limit("req", "key_a", 60).allowed


def test_webhook_deliveries_are_recorded_with_the_job_ttl(store):
    job = make(store)
    store.start_attempt(job.id, 3, "m", False)
    store.transition(job.id, JobStatus.FAILED)
    store.record_delivery(job.id, {"webhook_id": "msg_1", "attempt": 1})
    assert store.deliveries(job.id) == [{"webhook_id": "msg_1", "attempt": 1}]
    assert store.r.ttl(store.deliveries_key(job.id)) > 0


def test_created_job_stays_in_the_outbox_until_its_message_is_sent(store):
    job = make(store)
    assert store.claim_unsent(older_than_s=0) == [job.id]
    store.mark_sent(job.id)
    assert store.claim_unsent(older_than_s=0) == []


def test_outbox_entry_is_leased_to_one_sweeper_at_a_time(store):
    job = make(store)
    assert store.claim_unsent(older_than_s=60) == []  # too young: its submission may still be sending
    store.r.zadd(store.unsent_key, {job.id: time.time() - 61})
    assert store.claim_unsent(older_than_s=60) == [job.id]
    assert store.claim_unsent(older_than_s=60) == []  # leased: another sweeper does not get it
    store.r.zadd(store.unsent_key, {job.id: time.time() - 61})  # the lease ran out (sweeper died)
    assert store.claim_unsent(older_than_s=60) == [job.id]


def test_abandoned_idempotency_claim_is_taken_over_once_stale(store):
    # The API died after claiming the key and before creating the job: the key must not answer
    # "in progress" for its whole TTL.
    assert store.claim_idempotency("key_a", "k", "anim_dead", "h", 600, stale_after_s=0.2) is None
    assert store.claim_idempotency("key_a", "k", "anim_2", "h", 600, stale_after_s=0.2) == {
        "job_id": "anim_dead",
        "hash": "h",
    }
    time.sleep(0.3)
    assert store.claim_idempotency("key_a", "k", "anim_3", "h", 600, stale_after_s=0.2) is None
    assert store.claim_idempotency("key_a", "k", "anim_4", "h", 600)["job_id"] == "anim_3"


def test_idempotency_claim_of_a_created_job_is_never_taken_over(store):
    job = make(store)
    assert store.claim_idempotency("key_a", "k", job.id, "h", 600, stale_after_s=0.01) is None
    time.sleep(0.05)
    assert (
        store.claim_idempotency("key_a", "k", "anim_other", "h", 600, stale_after_s=0.01)["job_id"] == job.id
    )


def test_running_job_whose_lock_expired_is_claimed_once_as_an_orphan(store):
    alive, dead, done = make(store), make(store), make(store)
    for job in (alive, dead, done):
        store.start_attempt(job.id, 3, "m", False)
    store.try_lock(alive.id, "t", 60)
    store.transition(done.id, JobStatus.SUCCEEDED, outputs={"video": "v", "poster": "p"})
    assert store.claim_orphaned(lock_ttl_s=60) == []  # just started: each had a lock TTL to take its lock
    store.r.zadd(store.running_key, {alive.id: 0, dead.id: 0})
    assert store.claim_orphaned(lock_ttl_s=60) == [dead.id]
    assert store.claim_orphaned(lock_ttl_s=60) == []  # returned once; the alive one is checked later
    assert store.r.zscore(store.running_key, alive.id) > time.time() - 5
    store.start_attempt(dead.id, 3, "m", False)  # the next attempt tracks it again
    assert store.r.zscore(store.running_key, dead.id) is not None


def test_running_count_is_jobs_with_a_live_lock_and_oldest_age_is_the_queue_head(store):
    a, b, c = (make(store) for _ in range(3))
    now = time.time()
    assert store.running_count() == 0
    assert 0 <= store.oldest_queued_age(now) - (now - a.created_at) < 1e-3
    for job in (a, b):
        assert store.start_attempt(job.id, 3, "noop", False).outcome == "started"
    assert store.try_lock(a.id, "t", 30) and store.try_lock(b.id, "t", 0.05)
    time.sleep(0.1)  # b's worker died: its lock expired, it is no longer counted
    assert store.running_count() == 1
    assert 0 <= store.oldest_queued_age(now) - (now - c.created_at) < 1e-3
    store.start_attempt(c.id, 3, "noop", False)
    assert store.oldest_queued_age(time.time()) == 0.0


def test_lua_scripts_spell_no_status_and_take_the_terminal_set_from_the_contract():
    import re
    from importlib import resources

    from jobs.store import scripts

    statuses = {s.value for s in JobStatus}
    for path in resources.files("jobs.store").joinpath("lua").iterdir():
        body = path.read_text()
        quoted = set(re.findall(r"'([a-z_]+)'", body))
        # 'canceled' is also CancelOutcome's reply of cancel.lua; every other status is STATUS.<name>.
        assert not (quoted & statuses) - ({"canceled"} if path.name == "cancel.lua" else set()), path.name
        prelude = scripts.source(path.name.removesuffix(".lua")).split(body)[0]
        for status in JobStatus:
            assert (f"['{status.value}'] = true" in prelude) == status.is_terminal()


def test_outcomes_are_typed(store):
    from jobs.store import CancelOutcome, StartOutcome, TransitionOutcome

    job = make(store)
    assert store.request_cancel(job.id) is CancelOutcome.CANCELED
    assert store.start_attempt(job.id, 3, "m", False).outcome is StartOutcome.FINISHED
    assert store.transition(job.id, JobStatus.RUNNING)[0] is TransitionOutcome.REFUSED
