"""jobs.fairness: per-key extraction slots on real Redis (issue 24, M1)."""

from __future__ import annotations

import time
import uuid

import pytest

from jobs.fairness import ExtractionSlots


@pytest.fixture
def slots(redis_client):
    return ExtractionSlots(redis_client, f"fair{uuid.uuid4().hex}", per_key=2, ttl_s=1, defer_s=0.05)


def test_a_key_gets_at_most_its_slots_and_other_keys_are_not_affected(slots):
    assert slots.acquire("a", "a1") and slots.acquire("a", "a2")
    assert not slots.acquire("a", "a3")
    assert slots.acquire("b", "b1")  # another key's slots are its own
    assert slots.acquire("a", "a1")  # a holder asking again (a redelivery) keeps its slot
    slots.release("a", "a1")
    assert slots.acquire("a", "a3")


def test_waiters_of_a_key_take_freed_slots_first_come_first_served(slots):
    assert slots.acquire("a", "a1") and slots.acquire("a", "a2")
    assert not slots.acquire("a", "early") and not slots.acquire("a", "late")
    slots.release("a", "a1")
    assert not slots.acquire("a", "late")  # "early" waited longer: the free slot is its
    assert not slots.acquire("a", "newcomer")
    assert slots.acquire("a", "early")
    slots.release("a", "a2")
    assert slots.acquire("a", "late")


def test_a_dead_holders_slot_and_a_silent_waiters_place_expire(slots):
    assert slots.acquire("a", "a1") and slots.acquire("a", "a2")
    assert not slots.acquire("a", "gone")  # waits, then never asks again (its worker died)
    time.sleep(1.1)  # the lease (1 s) and the waiter's staleness (5 deferrals, 1 s at least) pass
    assert slots.acquire("a", "next") and slots.acquire("a", "after")


def test_a_held_slot_is_renewed_while_its_block_runs_and_released_after(slots):
    with slots.held("a", "long") as held:
        assert held
        time.sleep(1.5)  # longer than the lease: renewed every third of it
        assert slots.running("a") == ["long"]
        assert slots.acquire("a", "other")
        assert not slots.acquire("a", "third")
    assert slots.running("a") == ["other"]
    with slots.held("a", "newcomer") as newcomer:
        assert not newcomer  # "third" has waited longer for the freed slot
    with slots.held("a", "third") as third, slots.held("a", "newcomer") as newcomer:
        assert third and not newcomer


def test_a_waiter_that_leaves_does_not_hold_up_the_line(slots):
    assert slots.acquire("a", "a1") and slots.acquire("a", "a2")
    assert not slots.acquire("a", "canceled") and not slots.acquire("a", "next")
    slots.leave("a", "canceled")
    slots.release("a", "a1")
    assert slots.acquire("a", "next")
