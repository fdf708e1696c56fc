"""Failures are counted exactly, with reasons, and never timed; too many of them stop the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from simproc import SimFactory, read_jsonl

from benchctl.load.runner import run
from benchctl.load.spec import LoadSpec


def spec(url: str, **kw: Any) -> LoadSpec:
    base = {"target": url, "concurrency": [4], "warmup": 0, "input_tokens": 16, "output_tokens": 8, "seed": 5}
    return LoadSpec.from_dict({**base, **kw})


FAST = ("--ttft-base-ms", "1", "--itl-ms", "0.5", "--prefill-ms-per-1k", "0")


def test_server_errors_are_counted_exactly_with_reasons(sim: SimFactory, tmp_path: Path) -> None:
    s = sim(*FAST, "--fail-rate", "0.25")
    summary = run(spec(s.url, requests=80), tmp_path / "out")
    assert summary["status"] == "ok", summary["failures"]
    lines = read_jsonl(tmp_path / "out" / "requests.jsonl")
    truth = s.truth({ln["id"] for ln in lines})
    failed_truth = sum(1 for ln in lines if truth[ln["id"]]["status"] == 500)
    point = summary["points"][0]
    assert 19 <= failed_truth <= 21  # the simulator fails an exact share (error diffusion)
    assert point["requests"]["failed"] == failed_truth
    assert point["requests"]["completed"] == 80 - failed_truth
    assert point["errors_by_reason"] == {"http_500": failed_truth}
    assert point["ttft_ms"]["n"] == point["e2e_ms"]["n"] == 80 - failed_truth  # failures never timed
    assert point["output_tokens_per_s"] == pytest.approx(point["requests_per_s"] * 8, rel=1e-3)
    for ln in lines:
        if truth[ln["id"]]["status"] == 500:
            assert ln["error"] == "http_500" and ln["ttft_ms"] is None


def test_error_threshold_stops_the_run_early(sim: SimFactory, tmp_path: Path) -> None:
    s = sim(*FAST, "--fail-rate", "0.8", truth=False)
    summary = run(spec(s.url, requests=400, concurrency=[4, 8], max_error_rate=0.5), tmp_path / "out")
    assert summary["status"] == "failed"
    assert len(summary["points"]) == 1  # the sweep stops at the failing point
    point = summary["points"][0]
    assert point["stopped_early"] is True
    assert point["requests"]["completed"] + point["requests"]["failed"] < 400
    assert "stopped early" in summary["failures"][0] and "http_500" in summary["failures"][0]


def test_timeouts_with_a_hanging_server(sim: SimFactory, tmp_path: Path) -> None:
    s = sim(*FAST, "--hang-rate", "0.2")
    summary = run(spec(s.url, requests=30, concurrency=[6], timeout_s=0.4), tmp_path / "out")
    assert summary["status"] == "ok", summary["failures"]
    lines = read_jsonl(tmp_path / "out" / "requests.jsonl")
    truth = s.truth({ln["id"] for ln in lines})
    hung = sum(1 for ln in lines if truth[ln["id"]]["status"] == "hang")
    point = summary["points"][0]
    assert hung >= 5
    assert point["requests"]["timeouts"] == point["requests"]["failed"] == hung
    assert point["errors_by_reason"] == {"timeout": hung}
    assert all(ln["timed_out"] == (truth[ln["id"]]["status"] == "hang") for ln in lines)


def test_unreachable_server_fails_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    summary = run(spec(f"http://127.0.0.1:{port}", requests=5), tmp_path / "out")
    assert summary["status"] == "failed" and summary["points"] == []
    assert "cannot list models" in summary["failures"][0] and "connect" in summary["failures"][0]
    summary = run(spec(f"http://127.0.0.1:{port}", requests=5, model="m"), tmp_path / "out2")
    assert "connect_error" in summary["failures"][0]
    assert (tmp_path / "out2" / "summary.json").exists()


def test_wrong_model_is_reported_not_retried(sim: SimFactory, tmp_path: Path) -> None:
    s = sim(*FAST, truth=False)
    summary = run(spec(s.url, requests=5, model="no-such-model"), tmp_path / "out")
    assert summary["status"] == "failed"
    assert "http_404" in summary["failures"][0] and "does not exist" in summary["failures"][0]


def test_stale_keep_alive_connection_is_retried_on_a_fresh_one() -> None:
    """A server that closes a kept-alive connection instead of answering its next request (as servers
    do when their keep-alive timeout races a new request) costs a retry, not a failed request."""
    import asyncio
    import socket
    import threading

    from benchctl.load.request import Client, RequestRecord

    body = (b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
            b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: [DONE]\n\n')
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(1)
            with conn:
                conn.recv(65536)  # first request: answered
                conn.sendall(response)
                conn.recv(65536)  # second request on this connection: dropped

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> list[RequestRecord]:
        client = Client(f"http://127.0.0.1:{port}")
        out = []
        for i in range(3):
            rec = RequestRecord(id=f"r{i}")
            await client.request(rec, "POST", "/chat/completions", b"{}", timeout_s=5)
            out.append(rec)
        client.close()
        return out

    try:
        records = asyncio.run(main())
    finally:
        listener.close()
    assert [r.error for r in records] == [None, None, None]
    assert all(r.completion_tokens == 1 and r.chunk_tokens == [1] for r in records)
    assert len(connections) == 3  # each request after the first needed a fresh connection
