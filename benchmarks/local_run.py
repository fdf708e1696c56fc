"""Wall time of the README's main-job command, end to end, split by phase.

Runs `benchctl run -c examples/local.toml` in a throwaway copy of the example (its own state) and
timestamps each step header ("==> create", "==> connection", …) as it appears on stderr.

    .venv/bin/python benchmarks/local_run.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHASES = ("create", "connection", "deploy", "benchmark", "results", "destroy")


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(REPO / "examples" / "local.toml", Path(tmp) / "bench.toml")
        env = {**os.environ, "PULUMI_HOME": str(Path(tmp) / ".pulumi-home")}
        env.pop("PULUMI_BACKEND_URL", None)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "benchctl", "run", "-c", "bench.toml"], cwd=tmp, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        marks: list[tuple[str, float]] = []
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("==> "):
                marks.append((line[4:].split(":")[0].strip(), time.perf_counter() - start))
        proc.wait()
        total = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"benchctl run failed with exit code {proc.returncode}")
    out: dict[str, float] = {}
    for i, (name, t0) in enumerate(marks):
        t1 = marks[i + 1][1] if i + 1 < len(marks) else total
        out[name] = out.get(name, 0.0) + (t1 - t0)
    out["python start-up + config"] = marks[0][1] if marks else 0.0
    out["total"] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    print(f"benchctl run -c examples/local.toml, {args.runs} runs (median seconds)")
    for name in ("python start-up + config", *PHASES, "total"):
        values = [r[name] for r in runs if name in r]
        if values:
            print(f"  {name:<26} {statistics.median(values):7.2f}   (min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
