"""Arrival patterns: when each request goes out. A sweep is a list of single-load points.

Two shapes, both with absolute deadlines so that one late wake-up never shifts the requests after it
(the cause of Poisson pacing running 9% short in vllm#21104):

* closed loop (fixed concurrency): `concurrency` workers, each sending its next request as soon as
  its previous response has ended; the scheduled time of a request is that end;
* open loop (constant or Poisson rate): arrival times fixed before the point starts; a cap on
  requests in flight (`max(concurrency)`) holds an arrival back when reached, and such arrivals are
  counted as `capped` rather than hidden in the latency numbers.

Poisson arrivals for a fixed number of requests N are drawn as N uniform points on [0, N/rate],
sorted: that is a Poisson process conditioned on N arrivals, so the scheduled rate is exactly the
asked one and only the send jitter is left to measure. With a duration instead, exponential gaps are
drawn until the duration is reached (an unconditioned Poisson process).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter

from benchctl.load.spec import LoadSpec

# send(scheduled_time, is_warmup) -> the time the request ended (perf_counter seconds)
Send = Callable[[float, bool], Awaitable[float]]


@dataclass(frozen=True)
class LoadPoint:
    """One load level of a sweep: closed loop at `concurrency`, or open loop at `rate` capped by it."""

    index: int
    concurrency: int
    rate: float | None = None
    arrival: str | None = None

    def label(self) -> str:
        if self.rate is None:
            return f"concurrency {self.concurrency}"
        return f"{self.arrival} {self.rate:g} req/s (cap {self.concurrency})"


def plan_points(spec: LoadSpec) -> list[LoadPoint]:
    """One point per concurrency, or, when rates are given, one per rate capped at max(concurrency)."""
    if spec.rate is None:
        return [LoadPoint(i, c) for i, c in enumerate(spec.concurrency)]
    cap = max(spec.concurrency)
    return [LoadPoint(i, cap, r, spec.arrival) for i, r in enumerate(spec.rate)]


def arrival_offsets(
    rate: float, arrival: str, rng: random.Random, *, count: int | None = None, duration_s: float | None = None
) -> list[float]:
    """Send times in seconds from the point's start. Ends at `count` arrivals or `duration_s`, whichever
    comes first (at least one must be given)."""
    if count is None and duration_s is None:
        raise ValueError("give count or duration_s")
    by_count = count is not None and (duration_s is None or count / rate <= duration_s)
    if arrival == "constant":
        step = 1.0 / rate
        if by_count:
            assert count is not None
            return [i * step for i in range(count)]
        assert duration_s is not None
        return [i * step for i in range(int(duration_s * rate - 1e-9) + 1)]
    if by_count:
        assert count is not None
        span = count / rate
        return sorted(rng.uniform(0.0, span) for _ in range(count))
    assert duration_s is not None
    out: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        out.append(t)
        t += rng.expovariate(rate)
    return out


async def closed_loop(
    concurrency: int, send: Send, *, warmup: int, requests: int | None, duration_s: float | None
) -> None:
    """Keep `concurrency` requests in flight. Warm-up: requests sent before `warmup` of them have ended
    are warm-up; the measured window opens at the first send after that, so it starts in steady state.
    Ends after `requests` measured sends or `duration_s` of window, whichever comes first."""
    state = {"ended": 0, "measured": 0}
    window: list[float] = []

    async def worker() -> None:
        ready = perf_counter()
        while True:
            warm = state["ended"] < warmup
            if not warm:
                if not window:
                    window.append(ready)
                if requests is not None and state["measured"] >= requests:
                    return
                if duration_s is not None and perf_counter() >= window[0] + duration_s:
                    return
                state["measured"] += 1
            ready = await send(ready, warm)
            state["ended"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def open_loop(offsets: list[float], cap: int, send: Send, *, warmup: int, lead_s: float = 0.02) -> int:
    """Send at `t0 + offset` for each offset; the first `warmup` are warm-up. Returns how many arrivals
    found `cap` requests in flight and had to wait (their send lag counts from when a slot freed).
    Cancelling this coroutine cancels every request in flight."""
    slots = asyncio.Semaphore(cap)
    tasks: set[asyncio.Task[None]] = set()
    capped = 0

    async def one(scheduled: float, warm: bool) -> None:
        try:
            await send(scheduled, warm)
        finally:
            slots.release()

    t0 = perf_counter() + lead_s
    try:
        for i, off in enumerate(offsets):
            deadline = t0 + off
            delay = deadline - perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled = deadline
            if slots.locked():
                capped += 1
                await slots.acquire()
                scheduled = perf_counter()
            else:
                await slots.acquire()
            task = asyncio.create_task(one(scheduled, i < warmup))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return capped
