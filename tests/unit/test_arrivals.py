"""Arrival schedules (pure) and the achieved send rate against a live simulator.

How the live check is measured: the achieved rate is (n - 1) / (last send - first send) over the
actual send times of the measured requests, compared with the asked rate; 3% tolerance. Poisson
schedules for a fixed request count are a Poisson process conditioned on that count (n uniform points
on [0, n/rate]), so the schedule itself hits the asked rate up to the edge effect of its first and
last points (well under 1% at n = 400); what is left is the client's send jitter, which absolute
deadlines keep from accumulating even on 2 busy cores.
"""

from __future__ import annotations

import random
import statistics
from itertools import pairwise
from pathlib import Path

import pytest
from simproc import SimFactory, read_jsonl

from benchctl.load.pattern import LoadPoint, arrival_offsets, plan_points
from benchctl.load.runner import run
from benchctl.load.spec import LoadSpec


def test_constant_schedule_is_exact() -> None:
    offs = arrival_offsets(50.0, "constant", random.Random(0), count=100)
    assert len(offs) == 100 and offs[0] == 0.0
    assert all(b - a == pytest.approx(0.02) for a, b in pairwise(offs))
    by_time = arrival_offsets(50.0, "constant", random.Random(0), duration_s=2.0)
    assert len(by_time) == 100 and by_time[-1] < 2.0


def test_poisson_schedule_has_the_asked_rate_and_exponential_gaps() -> None:
    n, rate = 20000, 100.0
    offs = arrival_offsets(rate, "poisson", random.Random(7), count=n)
    assert len(offs) == n and offs == sorted(offs)
    assert offs[0] >= 0.0 and offs[-1] <= n / rate
    gaps = [b - a for a, b in pairwise(offs)]
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=0.01)
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.05)  # CV of exp = 1


def test_poisson_by_duration_counts_like_poisson() -> None:
    counts = [len(arrival_offsets(50.0, "poisson", random.Random(s), duration_s=10.0)) for s in range(30)]
    assert statistics.fmean(counts) == pytest.approx(500, rel=0.05)  # mean 500, sd of the mean ~4
    assert len(set(counts)) > 5  # it is random, not a fixed count


def test_schedules_are_reproducible_with_the_seed() -> None:
    a = arrival_offsets(10.0, "poisson", random.Random("arrivals:3:0"), count=50)
    b = arrival_offsets(10.0, "poisson", random.Random("arrivals:3:0"), count=50)
    assert a == b


def test_sweep_points() -> None:
    spec = LoadSpec(target="http://x", concurrency=[1, 8], rate=[5, 10], arrival="constant")
    assert plan_points(spec) == [LoadPoint(0, 8, 5.0, "constant"), LoadPoint(1, 8, 10.0, "constant")]
    assert [p.concurrency for p in plan_points(LoadSpec(target="http://x", concurrency=[1, 4]))] == [1, 4]


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_achieved_rate_within_3_percent(sim: SimFactory, tmp_path: Path, arrival: str) -> None:
    s = sim("--ttft-base-ms", "1", "--itl-ms", "0.5", "--prefill-ms-per-1k", "0", truth=False)
    rate, n = 200.0, 400
    spec = LoadSpec.from_dict({"target": s.url, "rate": [rate], "arrival": arrival, "concurrency": [64],
                               "requests": n, "warmup": 0, "input_tokens": 16, "output_tokens": 4, "seed": 3})
    summary = run(spec, tmp_path / "out")
    assert summary["status"] == "ok", summary["failures"]
    point = summary["points"][0]
    assert point["requests"]["completed"] == n
    assert point["capped"] == 0
    starts = sorted(ln["start_s"] for ln in read_jsonl(tmp_path / "out" / "requests.jsonl"))
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert achieved == pytest.approx(rate, rel=0.03)
    assert point["sent_rate_per_s"] == pytest.approx(achieved, rel=1e-3)
