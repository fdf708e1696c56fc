"""Pure functions from raw request records to the numbers in summary.json (docs/metrics.md).

Nothing here touches the network or the clock: the same records always give the same summary, so
every formula is unit-testable. Definitions, in one place:

* TTFT  = first token-bearing chunk arrival - send. A chat role-only chunk carries no token.
* ITL   = every gap between consecutive tokens. A chunk carrying k tokens contributes k gaps of
          (its arrival - the previous token-bearing chunk's arrival) / k; k comes from the server's
          continuous usage counts when it sends them, else 1 per token-bearing chunk. Extra tokens
          bundled into the first chunk contribute no gap (there is no earlier token to measure from).
* TPOT  = (E2E - TTFT) / (output_tokens - 1), for requests with at least 2 output tokens.
* E2E   = last response byte - send.
* Throughput = sums over completed requests / duration, duration = first measured send -> last
  measured request end. Failed and timed-out requests are counted, never timed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import NormalDist
from typing import Any

from benchctl.load.request import RequestRecord

STAT_KEYS = ("mean", "std", "min", "p50", "p90", "p95", "p99", "max", "ci95_low", "ci95_high", "n")

# The client is "bound" (its timing cannot be trusted) when any of these is passed. See docs/metrics.md.
CLIENT_THRESHOLDS: dict[str, float] = {
    "send_lag_p99_ms": 10.0,  # requests left late: the asked load was not the load applied
    "loop_lag_p99_ms": 10.0,  # a busy event loop stamps chunk arrivals late
    "cpu_percent": 90.0,  # one saturated core: everything above queues inside the client
}

_Z975 = NormalDist().inv_cdf(0.975)


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student t quantile: exact for df 1-2, Cornish-Fisher expansion (error < 0.2%) above."""
    if df < 1:
        return math.nan
    if df == 1:
        return 12.7062
    if df == 2:
        return 4.3027
    z = _Z975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * df**4))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear' method)."""
    n = len(sorted_values)
    pos = (n - 1) * q
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def describe(values: Iterable[float]) -> dict[str, Any]:
    """mean, sample std, min, p50/p90/p95/p99, max, the 95% CI of the mean, n. All None when n = 0."""
    v = sorted(values)
    n = len(v)
    if n == 0:
        return {k: (0 if k == "n" else None) for k in STAT_KEYS}
    mean = math.fsum(v) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    half = t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else None
    r = _round
    return {
        "mean": r(mean), "std": r(std), "min": r(v[0]),
        "p50": r(percentile(v, 0.50)), "p90": r(percentile(v, 0.90)),
        "p95": r(percentile(v, 0.95)), "p99": r(percentile(v, 0.99)), "max": r(v[-1]),
        "ci95_low": r(mean - half) if half is not None else None,
        "ci95_high": r(mean + half) if half is not None else None,
        "n": n,
    }


def _round(x: float) -> float:
    return round(x, 4)


# ------------------------------------------------------------------------------------ per request


def output_tokens(rec: RequestRecord) -> int:
    """The server's usage count when it sent one, else the tokens counted from chunks."""
    return rec.completion_tokens if rec.completion_tokens is not None else sum(rec.chunk_tokens)


def ttft_ms(rec: RequestRecord) -> float:
    return (rec.chunk_times[0] - rec.sent) * 1000.0


def e2e_ms(rec: RequestRecord) -> float:
    assert rec.end is not None
    return (rec.end - rec.sent) * 1000.0


def itl_ms(rec: RequestRecord) -> list[float]:
    """Every inter-token gap; a k-token chunk gives k equal gaps (see the module docstring)."""
    times, toks = rec.chunk_times, rec.chunk_tokens
    out: list[float] = []
    for i in range(1, len(times)):
        k = toks[i]
        gap = (times[i] - times[i - 1]) * 1000.0
        if k == 1:
            out.append(gap)
        else:
            out.extend([gap / k] * k)
    return out


def tpot_ms(rec: RequestRecord) -> float | None:
    n = output_tokens(rec)
    return (e2e_ms(rec) - ttft_ms(rec)) / (n - 1) if n > 1 else None


def meets_slo(rec: RequestRecord, slo: dict[str, float]) -> bool:
    """True when a completed request meets every SLO given. itl_ms is held against the request's largest
    gap; tpot_ms and itl_ms pass vacuously for one-token outputs."""
    if "ttft_ms" in slo and ttft_ms(rec) > slo["ttft_ms"]:
        return False
    if "e2e_ms" in slo and e2e_ms(rec) > slo["e2e_ms"]:
        return False
    if "tpot_ms" in slo:
        t = tpot_ms(rec)
        if t is not None and t > slo["tpot_ms"]:
            return False
    if "itl_ms" in slo:
        gaps = itl_ms(rec)
        if gaps and max(gaps) > slo["itl_ms"]:
            return False
    return True


def request_line(rec: RequestRecord, point: int, start: float) -> dict[str, Any]:
    """One requests.jsonl line (docs/results-schema.md)."""
    ok = rec.error is None
    return {
        "id": rec.id,
        "point": point,
        "start_s": round(rec.sent - start, 6),
        "ttft_ms": round(ttft_ms(rec), 3) if ok else None,
        "e2e_ms": round(e2e_ms(rec), 3) if ok else None,
        "input_tokens": rec.prompt_tokens,
        "output_tokens": output_tokens(rec) if ok else None,
        "itl_ms": [round(x, 3) for x in itl_ms(rec)] if ok else [],
        "error": rec.error,
        "timed_out": rec.timed_out,
    }


# ------------------------------------------------------------------------------------ per point


def client_check(send_lags_ms: Sequence[float], loop_lags_ms: Sequence[float], cpu_percent: float,
                 thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """The client's proof that it was not the bottleneck, and `bound` when any threshold is passed."""
    th = dict(thresholds or CLIENT_THRESHOLDS)
    s = sorted(send_lags_ms)
    lp = sorted(loop_lags_ms)
    send = {"p50": _round(percentile(s, 0.5)) if s else None, "p99": _round(percentile(s, 0.99)) if s else None,
            "max": _round(s[-1]) if s else None}
    loop = {"p99": _round(percentile(lp, 0.99)) if lp else None, "max": _round(lp[-1]) if lp else None}
    reasons = []
    if send["p99"] is not None and send["p99"] > th["send_lag_p99_ms"]:
        reasons.append(f"send lag p99 {send['p99']:.1f} ms > {th['send_lag_p99_ms']:g} ms")
    if loop["p99"] is not None and loop["p99"] > th["loop_lag_p99_ms"]:
        reasons.append(f"event-loop lag p99 {loop['p99']:.1f} ms > {th['loop_lag_p99_ms']:g} ms")
    if cpu_percent > th["cpu_percent"]:
        reasons.append(f"client CPU {cpu_percent:.0f}% > {th['cpu_percent']:g}%")
    return {"bound": bool(reasons), "reasons": reasons, "send_lag_ms": send, "loop_lag_ms": loop,
            "cpu_percent": round(cpu_percent, 1), "thresholds": th}


def summarize_point(
    records: Sequence[RequestRecord],
    *,
    index: int,
    concurrency: int,
    rate: float | None,
    arrival: str | None,
    slo: dict[str, float],
    client: dict[str, Any],
) -> dict[str, Any]:
    """One load point of summary.json from its measured (non-warm-up) records."""
    done = [r for r in records if r.error is None]
    failed = [r for r in records if r.error is not None]
    reasons = Counter(r.error or "" for r in failed)
    starts = [r.sent for r in records if r.sent]
    ends = [r.end for r in records if r.end is not None]
    duration = (max(ends) - min(starts)) if starts and ends else 0.0
    out_tok = [output_tokens(r) for r in done]
    in_tok = [r.prompt_tokens for r in done if r.prompt_tokens is not None]
    itls: list[float] = []
    for r in done:
        itls.extend(itl_ms(r))
    per = (lambda x: round(x / duration, 4)) if duration > 0 else (lambda x: 0.0)
    point: dict[str, Any] = {
        "index": index,
        "concurrency": concurrency,
        "rate": rate,
        "arrival": arrival,
        "requests": {
            "completed": len(done),
            "failed": len(failed),
            "timeouts": sum(1 for r in failed if r.timed_out),
            "short_outputs": sum(1 for r in done if r.max_tokens and output_tokens(r) < r.max_tokens),
        },
        "errors_by_reason": dict(sorted(reasons.items())),
        "duration_s": round(duration, 6),
        "requests_per_s": per(len(done)),
        "output_tokens_per_s": per(sum(out_tok)),
        "input_tokens_per_s": per(sum(in_tok)),
        "total_tokens_per_s": per(sum(out_tok) + sum(in_tok)),
        "ttft_ms": describe(ttft_ms(r) for r in done),
        "itl_ms": describe(itls),
        "tpot_ms": describe(t for t in (tpot_ms(r) for r in done) if t is not None),
        "e2e_ms": describe(e2e_ms(r) for r in done),
        "input_tokens": describe(in_tok),
        "output_tokens": describe(out_tok),
        "token_count_source": "server_usage" if done and all(r.completion_tokens is not None for r in done)
        else "chunks",
    }
    if rate is not None and len(starts) > 1:
        s = sorted(starts)
        point["sent_rate_per_s"] = round((len(s) - 1) / (s[-1] - s[0]), 4) if s[-1] > s[0] else None
    if slo:
        met = sum(1 for r in done if meets_slo(r, slo))
        point["slo"] = dict(slo)
        point["slo_met"] = met
        point["goodput_requests_per_s"] = per(met)
    point["client"] = client
    return point
