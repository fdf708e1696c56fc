"""How long `benchctl --help` and `benchctl validate` take to start, as a user runs them.

Runs the installed console script (the one beside this interpreter) N times per command in fresh
processes and prints the median, min and 90th percentile wall time in milliseconds, next to a bare
`python -c pass` for the interpreter's own start-up. Target: `benchctl --help` <= 150 ms.

    .venv/bin/python benchmarks/cli_startup.py            # 20 runs per command
    .venv/bin/python benchmarks/cli_startup.py --runs 50 --json

Numbers are recorded in docs/performance.md ("CLI start-up"); they are never asserted in tests.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED_AWS = REPO / "tests" / "fixtures" / "configs" / "seed" / "aws.toml"
TARGET_HELP_MS = 150.0


def timed(argv: list[str], cwd: Path, runs: int, warmup: int = 2) -> list[float]:
    """Wall times (ms) of `runs` fresh processes, after `warmup` untimed ones (page cache, .pyc files)."""
    out = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = (time.perf_counter() - start) * 1000.0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
        if i >= warmup:
            out.append(elapsed)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 1), "min_ms": round(ordered[0], 1),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1), "runs": len(ordered)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    script = Path(sys.executable).parent / "benchctl"
    if not script.exists():
        raise SystemExit(f"no benchctl console script beside {sys.executable}: run `make setup`")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        config = cwd / "bench.toml"
        config.write_text('bench_id = "startup"\nmodel = "Qwen/Qwen2.5-0.5B-Instruct"\n' + SEED_AWS.read_text())
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "benchctl --help": [str(script), "--help"],
            "benchctl validate -c <seed aws>": [str(script), "validate", "-c", str(config)],
        }
        results = {name: summary(timed(argv, cwd, args.runs)) for name, argv in commands.items()}

    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}
    help_ms = results["benchctl --help"]["median_ms"]
    if args.json:
        print(json.dumps({"machine": machine, "target_help_ms": TARGET_HELP_MS, "results": results}, indent=2))
    else:
        print(f"{'command':<34} {'median':>8} {'min':>8} {'p90':>8}   ({args.runs} runs each, ms)")
        for name, r in results.items():
            print(f"{name:<34} {r['median_ms']:>8.1f} {r['min_ms']:>8.1f} {r['p90_ms']:>8.1f}")
        verdict = "meets" if help_ms <= TARGET_HELP_MS else "MISSES"
        print(f"\nbenchctl --help: median {help_ms:.1f} ms {verdict} the {TARGET_HELP_MS:.0f} ms target "
              f"({machine['cpus']} CPUs, Python {machine['python']})")
    return 0 if help_ms <= TARGET_HELP_MS else 1


if __name__ == "__main__":
    sys.exit(main())
