"""`benchctl bench` and `benchctl simulate` as a user runs them: subprocesses, real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from simproc import REPO, SimFactory, read_jsonl


def benchctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("BENCHCTL_API_KEY", None)
    return subprocess.run([sys.executable, "-c", "from benchctl.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def test_bench_against_the_simulator(sim: SimFactory, tmp_path: Path) -> None:
    s = sim("--itl-ms", "1", "--ttft-base-ms", "5", truth=False)
    out = tmp_path / "bench"
    r = benchctl("bench", "--target", s.url, "--concurrency", "16", "--requests", "200", "--input-tokens", "128",
                 "--output-tokens", "64", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    point = summary["points"][0]
    assert point["requests"]["completed"] == 200 and point["requests"]["failed"] == 0
    assert point["input_tokens"]["mean"] == 128 and point["output_tokens"]["min"] == 64
    assert len(read_jsonl(out / "requests.jsonl")) == 200
    assert "TTFT p50/p99 ms" in r.stdout and "c=16" in r.stdout  # the table
    assert f"results: {out}" in r.stderr
    assert "[done]" in r.stderr  # progress (not a TTY: plain lines)


def test_bench_json_prints_only_the_summary(sim: SimFactory, tmp_path: Path) -> None:
    s = sim("--itl-ms", "0.5", "--ttft-base-ms", "1", truth=False)
    r = benchctl("bench", "--target", s.url, "--concurrency", "2", "--requests", "6", "--warmup", "0",
                 "--output-tokens", "4", "--slo", "ttft_ms=1000,e2e_ms=2000", "--json", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["schema"] == "benchctl.summary/v1"
    assert summary["points"][0]["slo"] == {"ttft_ms": 1000.0, "e2e_ms": 2000.0}
    assert "[measure]" not in r.stderr


@pytest.mark.parametrize("flags,message", [
    (["--concurrency", "0"], "--concurrency"),
    (["--concurrency", "4,x"], "--concurrency"),
    (["--rate", "-1"], "--rate"),
    (["--slo", "ttft=5"], "--slo"),
    (["--slo", "ttft_ms=abc"], "--slo"),
    (["--requests", "0"], "requests"),
    (["--max-error-rate", "2"], "max_error_rate"),
    (["--api", "embeddings"], "--api"),
    (["--target", "localhost:8000"], "target"),
])
def test_bad_flags_exit_2(flags: list[str], message: str, tmp_path: Path) -> None:
    args = ["bench", "--target", "http://127.0.0.1:9", "--out", str(tmp_path / "o"), *flags]
    r = benchctl(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert not (tmp_path / "o").exists()  # nothing ran


def test_unreachable_target_exits_1(tmp_path: Path) -> None:
    r = benchctl("bench", "--target", "http://127.0.0.1:9", "--requests", "2", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert "cannot list models" in r.stderr


def test_simulate_bad_flag_exits_2() -> None:
    r = benchctl("simulate", "--port", "0", "--fail-rate", "1.5")
    assert r.returncode == 2 and "fail_rate" in r.stderr


def test_simulate_serves_until_stopped() -> None:
    import select
    import signal
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", "from benchctl.cli import main; main()", "simulate", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
            assert json.loads(r.read())["data"][0]["id"] == "benchctl-sim"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
