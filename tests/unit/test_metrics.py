"""The formulas of docs/metrics.md on hand-made records (no server, no clock)."""

from __future__ import annotations

import math
import statistics

import pytest

from benchctl.load import metrics
from benchctl.load.request import RequestRecord


def rec(sent: float, chunks: list[tuple[float, int]], end: float | None = None, *, usage: int | None = None,
        error: str | None = None, asked: int = 0, prompt: int | None = 10, timed_out: bool = False) -> RequestRecord:
    r = RequestRecord(id=f"r{sent}", sent=sent, end=end if end is not None else (chunks[-1][0] if chunks else sent))
    r.chunk_times = [t for t, _ in chunks]
    r.chunk_tokens = [k for _, k in chunks]
    r.completion_tokens = usage
    r.error = error
    r.max_tokens = asked
    r.prompt_tokens = prompt
    r.timed_out = timed_out
    return r


def test_multi_token_chunk_gives_k_equal_gaps() -> None:
    # first token at 100 ms, one token at 200 ms, then a 4-token chunk at 600 ms: 4 gaps of 100 ms.
    r = rec(0.0, [(0.1, 1), (0.2, 1), (0.6, 4)], usage=6)
    assert metrics.itl_ms(r) == pytest.approx([100.0] * 5)
    assert metrics.ttft_ms(r) == pytest.approx(100.0)
    assert metrics.tpot_ms(r) == pytest.approx((600.0 - 100.0) / 5)


def test_bundled_first_chunk_adds_no_gap_but_counts_in_tpot() -> None:
    r = rec(0.0, [(0.1, 3), (0.2, 1)], usage=4)
    assert metrics.itl_ms(r) == pytest.approx([100.0])
    assert metrics.tpot_ms(r) == pytest.approx(100.0 / 3)


def test_output_tokens_prefer_server_usage_over_chunks() -> None:
    assert metrics.output_tokens(rec(0.0, [(0.1, 1), (0.2, 1)], usage=7)) == 7
    assert metrics.output_tokens(rec(0.0, [(0.1, 1), (0.2, 2)])) == 3


def test_tpot_undefined_for_one_token() -> None:
    assert metrics.tpot_ms(rec(0.0, [(0.1, 1)], usage=1)) is None


def test_describe_matches_statistics_module_and_linear_percentiles() -> None:
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    d = metrics.describe(values)
    assert d["n"] == 8
    assert d["mean"] == pytest.approx(statistics.fmean(values), abs=1e-4)
    assert d["std"] == pytest.approx(statistics.stdev(values), abs=1e-4)
    assert (d["min"], d["max"]) == (1.0, 9.0)
    # numpy.percentile(values, 50/90) with linear interpolation: 3.5 and 6.9
    assert d["p50"] == pytest.approx(3.5)
    assert d["p90"] == pytest.approx(6.9)
    half = 2.3646 * statistics.stdev(values) / math.sqrt(8)  # t(0.975, df=7) = 2.3646
    assert d["ci95_low"] == pytest.approx(statistics.fmean(values) - half, abs=2e-3)
    assert d["ci95_high"] == pytest.approx(statistics.fmean(values) + half, abs=2e-3)


def test_describe_edge_cases() -> None:
    empty = metrics.describe([])
    assert empty["n"] == 0 and empty["mean"] is None and empty["ci95_low"] is None
    one = metrics.describe([5.0])
    assert one["mean"] == 5.0 and one["std"] == 0.0 and one["ci95_low"] is None and one["p99"] == 5.0


@pytest.mark.parametrize("df,exact", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (5, 2.5706), (10, 2.2281),
                                      (30, 2.0423), (100, 1.9840), (1000, 1.9623)])
def test_t_quantile_within_0_2_percent(df: int, exact: float) -> None:
    assert metrics.t_quantile_975(df) == pytest.approx(exact, rel=2e-3)


def test_goodput_requires_every_slo() -> None:
    good = rec(0.0, [(0.05, 1), (0.06, 1), (0.07, 1)], usage=3)
    slow_first = rec(0.0, [(0.5, 1), (0.51, 1)], usage=2)
    stall = rec(0.0, [(0.05, 1), (0.06, 1), (0.30, 1)], usage=3)  # one 240 ms gap
    slo = {"ttft_ms": 100.0, "itl_ms": 100.0}
    assert [metrics.meets_slo(r, slo) for r in (good, slow_first, stall)] == [True, False, False]
    assert metrics.meets_slo(stall, {"ttft_ms": 100.0, "tpot_ms": 200.0})  # mean decode pace is fine


def test_summarize_point_counts_and_excludes_failures_from_latency() -> None:
    ok1 = rec(10.0, [(10.1, 1), (10.2, 1), (10.3, 2)], usage=4, asked=4, prompt=100)
    ok2 = rec(10.5, [(10.7, 1), (10.9, 1)], usage=2, asked=4, prompt=100)  # short output
    bad = rec(10.2, [], end=10.25, error="http_500", asked=4)
    hung = rec(10.3, [], end=12.0, error="timeout", asked=4, timed_out=True)
    client = metrics.client_check([0.1, 0.2], [1.0], 10.0)
    p = metrics.summarize_point([ok1, ok2, bad, hung], index=0, concurrency=4, rate=None, arrival=None,
                                slo={"ttft_ms": 150.0}, client=client)
    assert p["requests"] == {"completed": 2, "failed": 2, "timeouts": 1, "short_outputs": 1}
    assert p["errors_by_reason"] == {"http_500": 1, "timeout": 1}
    assert p["duration_s"] == pytest.approx(2.0)  # first send 10.0 -> last end 12.0
    assert p["requests_per_s"] == pytest.approx(1.0)
    assert p["output_tokens_per_s"] == pytest.approx(3.0)
    assert p["input_tokens_per_s"] == pytest.approx(100.0)
    assert p["total_tokens_per_s"] == pytest.approx(103.0)
    assert p["ttft_ms"]["n"] == 2 and p["ttft_ms"]["mean"] == pytest.approx(150.0)
    assert p["itl_ms"]["n"] == 2 + 1 + 1  # ok1: 100, 50, 50; ok2: 200
    assert p["tpot_ms"]["mean"] == pytest.approx(((300 - 100) / 3 + 200) / 2, abs=1e-3)
    assert p["slo_met"] == 1 and p["goodput_requests_per_s"] == pytest.approx(0.5)
    assert p["token_count_source"] == "server_usage"


def test_token_count_source_falls_back_to_chunks() -> None:
    r = rec(0.0, [(0.1, 1), (0.2, 1)])
    p = metrics.summarize_point([r], index=0, concurrency=1, rate=None, arrival=None, slo={},
                                client=metrics.client_check([], [], 0.0))
    assert p["token_count_source"] == "chunks"
    assert "goodput_requests_per_s" not in p


def test_client_check_thresholds() -> None:
    fine = metrics.client_check([0.1] * 100, [1.0] * 100, 40.0)
    assert fine["bound"] is False and fine["reasons"] == []
    late = metrics.client_check([0.1] * 90 + [50.0] * 10, [1.0] * 100, 40.0)
    assert late["bound"] is True and "send lag" in late["reasons"][0]
    busy = metrics.client_check([0.1], [1.0], 97.0)
    assert busy["bound"] is True and "CPU" in busy["reasons"][0]
    assert busy["thresholds"] == metrics.CLIENT_THRESHOLDS


def test_request_line_of_a_failure_has_no_latency() -> None:
    line = metrics.request_line(rec(5.0, [], end=5.1, error="http_500"), 2, 4.0)
    assert line["ttft_ms"] is None and line["itl_ms"] == [] and line["error"] == "http_500"
    assert line["start_s"] == pytest.approx(1.0) and line["point"] == 2
