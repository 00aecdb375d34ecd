"""``engine.weights.runtime.tune_cpu_allocator``: after it, a freed large tensor's pages stay mapped for the
next one, so allocating again does not fault them in again (what costs the full-size CPU job a third
of its time in the kernel; ``bench/allocator.py`` measures the job)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.weights import runtime

pytestmark = pytest.mark.skipif(runtime._glibc() is None, reason="glibc's malloc only")

# 20 rounds of a 64 MiB tensor written then freed, in a fresh process, after 20 rounds of warm-up
# (the heap grows in steps during the first few): the minor page faults of the measured rounds
SCRIPT = """
import json, resource, sys
import torch
from engine.weights.runtime import tune_cpu_allocator
applied = tune_cpu_allocator() if sys.argv[1] == "tuned" else None
for _ in range(20):
    torch.empty(16 << 20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    t = torch.empty(16 << 20)
    t.fill_(1.0)
    del t
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, "applied": applied}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)


def test_tuned_allocator_keeps_freed_tensor_pages_mapped():
    pages = (64 << 20) // 4096
    plain, tuned = _faults("plain"), _faults("tuned")
    assert tuned["applied"] is True
    assert plain["faults"] > 10 * pages  # glibc's default maps and faults in every round again
    assert tuned["faults"] < pages // 2  # not even half a round's pages in all 20 rounds (here: 0)


def test_tuning_is_idempotent_in_one_process():
    # in a child: tuning this test process would change the allocator under the rest of the suite
    code = "from engine.weights.runtime import tune_cpu_allocator as t; print(t(), t())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
