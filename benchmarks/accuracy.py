"""Accuracy: the client's TTFT and ITL against the simulator's own truth log, request by request.

    .venv/bin/python benchmarks/accuracy.py [--requests 160] [--streams 16]

Server: TTFT 80 ms (no prefill term), ITL 12 ms (no per-sequence term), 64 output tokens, in its own
process with --truth-log. Truth TTFT = first token chunk written - request received; truth ITL =
gaps between chunk writes. Targets: TTFT mean within 1 ms, ITL mean within 0.2 ms, every request
exactly 64 tokens. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchctl.load.runner import run  # noqa: E402
from benchctl.load.spec import LoadSpec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=160)
    ap.add_argument("--streams", type=int, default=16)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        truth_path = Path(tmp) / "truth.jsonl"
        sim = subprocess.Popen(
            [sys.executable, "-m", "benchctl.simulator", "--port", "0", "--ttft-base-ms", "80",
             "--prefill-ms-per-1k", "0", "--itl-ms", "12", "--itl-ms-per-running-seq", "0",
             "--truth-log", str(truth_path)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            url = sim.stdout.readline().split()[-1]  # type: ignore[union-attr]
            spec = LoadSpec(target=url, concurrency=[a.streams], requests=a.requests, warmup=a.streams,
                            input_tokens=128, output_tokens=64)
            summary = run(spec, Path(tmp) / "out")
            time.sleep(0.3)  # the truth log is flushed every 0.1 s
        finally:
            sim.terminate()
            sim.wait(10)
        lines = [json.loads(x) for x in (Path(tmp) / "out" / "requests.jsonl").read_text().splitlines()]
        truth = {e["id"]: e for e in map(json.loads, truth_path.read_text().splitlines())}
    ttft_d, itl_c, itl_t, exact = [], [], [], 0
    for ln in lines:
        t = truth[ln["id"]]
        ttft_d.append(ln["ttft_ms"] - (t["first_token"] - t["arrival"]) * 1000.0)
        itl_c.extend(ln["itl_ms"])
        ch = t["chunks"]
        itl_t.extend((b[0] - a_[0]) * 1000.0 / b[1] for a_, b in pairwise(ch) for _ in range(b[1]))
        exact += ln["output_tokens"] == 64 == t["completion_tokens"]
    p = summary["points"][0]
    print(f"{len(lines)} requests at {a.streams} streams; client check: bound={p['client']['bound']} "
          f"send lag p99 {p['client']['send_lag_ms']['p99']} ms, loop lag p99 {p['client']['loop_lag_ms']['p99']} ms, "
          f"CPU {p['client']['cpu_percent']}%")
    print(f"TTFT: client mean {p['ttft_ms']['mean']:.3f} ms; client - truth: mean {statistics.fmean(ttft_d):+.3f} ms, "
          f"p50 {statistics.median(ttft_d):+.3f}, max {max(ttft_d):+.3f} (target |mean| < 1 ms)")
    print(f"ITL: client mean {statistics.fmean(itl_c):.4f} ms, truth mean {statistics.fmean(itl_t):.4f} ms, "
          f"diff {statistics.fmean(itl_c) - statistics.fmean(itl_t):+.4f} ms (target < 0.2 ms); "
          f"client p99 {p['itl_ms']['p99']} ms")
    print(f"output length: {exact}/{len(lines)} requests exactly 64 tokens (client and server agree)")


if __name__ == "__main__":
    main()
