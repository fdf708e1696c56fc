"""Client overhead: how fast the benchctl client drives a zero-latency simulator, and its CPU per chunk.

    .venv/bin/python benchmarks/client_overhead.py [--requests 6000] [--streams 64] [--repeat 3]

The simulator runs in its own process (TTFT 0, ITL 0, one token per chunk, 64 output tokens), so the
two processes share the machine's cores but not a GIL. Client CPU is `time.process_time()` over the
measured window (the runner's own self-check), divided by the chunks received. Prints numbers; asserts
nothing (docs/performance.md keeps the results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchctl.load.runner import run  # noqa: E402
from benchctl.load.spec import LoadSpec  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--itl-ms", default="0",
                    help="0 (the target's setting) lets the simulator write a whole response at once; "
                         "a few ms makes every chunk its own write and read, the worst case per chunk")
    a = ap.parse_args()
    sim = subprocess.Popen(
        [sys.executable, "-m", "benchctl.simulator", "--port", "0", "--ttft-base-ms", "0", "--prefill-ms-per-1k", "0",
         "--itl-ms", a.itl_ms, "--itl-ms-per-running-seq", "0", "--max-running", "100000"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        url = sim.stdout.readline().split()[-1]  # type: ignore[union-attr]
        rows = []
        for i in range(a.repeat):
            spec = LoadSpec(target=url, concurrency=[a.streams], requests=a.requests, warmup=a.streams,
                            input_tokens=32, output_tokens=a.output_tokens, seed=i)
            with tempfile.TemporaryDirectory() as tmp:
                sim_cpu0 = cpu_seconds(sim.pid)
                summary = run(spec, Path(tmp))
                sim_cpu = cpu_seconds(sim.pid) - sim_cpu0
                lines = [json.loads(x) for x in (Path(tmp) / "requests.jsonl").read_text().splitlines()]
            p = summary["points"][0]
            chunks = sum(len(ln["itl_ms"]) + 1 for ln in lines if ln["error"] is None)
            cpu_s = p["client"]["cpu_percent"] / 100.0 * p["duration_s"]
            row = {
                "req_per_s": p["requests_per_s"],
                "chunks_per_s": chunks / p["duration_s"],
                "client_us_per_chunk": cpu_s / chunks * 1e6,
                "client_cpu_percent": p["client"]["cpu_percent"],
                "sim_us_per_request": sim_cpu / (a.requests + a.streams + 5) * 1e6,
                "failed": p["requests"]["failed"],
                "bound": p["client"]["bound"],
                "reasons": p["client"]["reasons"],
            }
            rows.append(row)
            print(f"run {i + 1}: {row['req_per_s']:.0f} req/s, {row['chunks_per_s']:,.0f} chunks/s, "
                  f"client {row['client_us_per_chunk']:.2f} us CPU/chunk ({row['client_cpu_percent']:.0f}% CPU), "
                  f"simulator {row['sim_us_per_request']:.0f} us CPU/request, failed {row['failed']}, "
                  f"client bound: {row['bound']} {row['reasons']}")
        med = {k: statistics.median(r[k] for r in rows) for k in ("req_per_s", "chunks_per_s", "client_us_per_chunk")}
        print(f"median of {a.repeat}: {med['req_per_s']:.0f} req/s, {med['chunks_per_s']:,.0f} chunks/s, "
              f"{med['client_us_per_chunk']:.2f} us client CPU per chunk (target <= 15)")
    finally:
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    main()
