"""The result files' schema (docs/results-schema.md), through the runner's command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from simproc import REPO, SimFactory, read_jsonl

from benchctl.load.metrics import STAT_KEYS
from benchctl.load.spec import LoadSpec, SpecError


def runner(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "benchctl.load.runner", *args], capture_output=True, text=True,
                          env=env, timeout=120)


NUM = (int, float)
POINT_TYPES: dict[str, Any] = {
    "index": int, "concurrency": int, "duration_s": NUM, "requests_per_s": NUM, "output_tokens_per_s": NUM,
    "input_tokens_per_s": NUM, "total_tokens_per_s": NUM, "token_count_source": str, "errors_by_reason": dict,
    "stopped_early": bool, "client": dict, "requests": dict,
}


def check_stats(stats: dict[str, Any]) -> None:
    assert set(stats) == set(STAT_KEYS)
    assert isinstance(stats["n"], int)
    for k in STAT_KEYS[:-1]:
        assert stats[k] is None or isinstance(stats[k], NUM), k


def check_point(p: dict[str, Any], slo: bool) -> None:
    for key, typ in POINT_TYPES.items():
        assert isinstance(p[key], typ), key
    assert set(p["requests"]) == {"completed", "failed", "timeouts", "short_outputs"}
    assert all(isinstance(v, int) for v in p["requests"].values())
    for key in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        check_stats(p[key])
    assert p["token_count_source"] in ("server_usage", "chunks")
    c = p["client"]
    assert isinstance(c["bound"], bool) and isinstance(c["cpu_percent"], NUM)
    assert set(c["send_lag_ms"]) == {"p50", "p99", "max"} and set(c["loop_lag_ms"]) == {"p99", "max"}
    assert set(c["thresholds"]) == {"send_lag_p99_ms", "loop_lag_p99_ms", "cpu_percent"}
    assert ("goodput_requests_per_s" in p) == slo
    assert "rate" in p and "arrival" in p


def test_runner_cli_writes_the_schema(sim: SimFactory, tmp_path: Path) -> None:
    s = sim("--ttft-base-ms", "1", "--itl-ms", "0.5", truth=False)
    spec = {"target": s.url + "/v1/", "concurrency": [2, 4], "requests": 10, "warmup": 2, "input_tokens": 16,
            "output_tokens": 6, "slo": {"ttft_ms": 1000, "tpot_ms": 100}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    r = runner("--spec", str(tmp_path / "spec.json"), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(r.stdout) == summary
    assert summary["schema"] == "benchctl.summary/v1"
    assert summary["status"] == "ok" and summary["failures"] == []
    for key, typ in {"target": str, "model": str, "api": str, "started_at": str, "spec": dict, "points": list,
                     "warnings": list, "server_options": dict, "calibration": dict}.items():
        assert isinstance(summary[key], typ), key
    assert summary["model"] == "benchctl-sim" and summary["api"] == "chat"
    assert "api_key" not in summary["spec"]
    assert [p["concurrency"] for p in summary["points"]] == [2, 4]
    for p in summary["points"]:
        check_point(p, slo=True)
        assert p["requests"]["completed"] == 10 and p["rate"] is None

    lines = read_jsonl(out / "requests.jsonl")
    assert len(lines) == 20 and {ln["point"] for ln in lines} == {0, 1}
    for ln in lines:
        assert {"point", "start_s", "ttft_ms", "e2e_ms", "input_tokens", "output_tokens", "itl_ms", "error",
                "timed_out"} <= set(ln)
        assert isinstance(ln["start_s"], float) and ln["start_s"] >= 0
        assert isinstance(ln["itl_ms"], list) and len(ln["itl_ms"]) == ln["output_tokens"] - 1 == 5
        assert ln["error"] is None and ln["timed_out"] is False

    progress = read_jsonl(out / "progress.jsonl")
    for line in progress:
        assert {"t", "phase", "point", "points", "done", "total", "rps", "errors"} <= set(line)
        assert line["phase"] in ("warmup", "measure", "done") and line["points"] == 2
    assert progress[-1]["phase"] == "done" and progress[-1]["status"] == "ok"
    assert any(line["phase"] == "measure" and line["point"] == 1 and line["done"] == 10 for line in progress)


def test_rate_point_fields(sim: SimFactory, tmp_path: Path) -> None:
    from benchctl.load.runner import run

    s = sim("--ttft-base-ms", "1", "--itl-ms", "0.5", truth=False)
    summary = run(LoadSpec(target=s.url, rate=[50], arrival="constant", concurrency=[8], requests=10, warmup=1,
                           input_tokens=8, output_tokens=4), None)
    p = summary["points"][0]
    check_point(p, slo=False)
    assert p["rate"] == 50.0 and p["arrival"] == "constant" and p["capped"] == 0
    assert isinstance(p["sent_rate_per_s"], float)


def test_bad_spec_exits_2(tmp_path: Path) -> None:
    cases = {
        "unknown": {"target": "http://x", "concurency": [1]},
        "value": {"target": "http://x", "concurrency": [0]},
        "url": {"target": "localhost:8000"},
        "slo": {"target": "http://x", "slo": {"ttft": 1}},
    }
    for name, spec in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
        r = runner("--spec", str(tmp_path / f"{name}.json"), "--out", str(tmp_path / "o"))
        assert r.returncode == 2, (name, r.stderr)
        assert "bad spec" in r.stderr
    (tmp_path / "broken.json").write_text("{not json")
    assert runner("--spec", str(tmp_path / "broken.json"), "--out", str(tmp_path / "o")).returncode == 2
    assert runner("--spec", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")).returncode == 2


def test_spec_round_trip_never_writes_the_key() -> None:
    spec = LoadSpec(target="http://h:1", api_key="sk-secret", concurrency=4, rate=2, slo={"e2e_ms": 10})
    d = spec.to_dict()
    assert "api_key" not in d and "sk-secret" not in json.dumps(d)
    assert d["concurrency"] == [4] and d["rate"] == [2.0]
    back = LoadSpec.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d and back.api_key is None
    with pytest.raises(SpecError, match="requests or duration_s"):
        LoadSpec(target="http://h", requests=None, duration_s=None)


def test_dataset_files_jsonl_and_sharegpt(sim: SimFactory, tmp_path: Path) -> None:
    from benchctl.load.runner import run

    s = sim("--ttft-base-ms", "1", "--itl-ms", "0.5", truth=False)
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('"one two three"\n{"prompt": "four five", "output_tokens": 3}\n\n')
    share = tmp_path / "sg.json"
    share.write_text(json.dumps([{"conversations": [{"from": "human", "value": "a b c d"},
                                                    {"from": "gpt", "value": "x"}]}]))
    for path, words in ((jsonl, {3, 2}), (share, {4})):
        summary = run(LoadSpec(target=s.url, dataset=str(path), concurrency=[2], requests=6, warmup=0,
                               output_tokens=5), tmp_path / path.stem)
        assert summary["status"] == "ok", summary["failures"]
        assert summary["calibration"]["method"] == "dataset"
        lines = read_jsonl(tmp_path / path.stem / "requests.jsonl")
        template = 4 + 3  # the simulator's chat template tokens, see benchctl/simulator.py
        assert {ln["input_tokens"] - template for ln in lines} == words
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n[1, 2]\n')
    with pytest.raises(SpecError, match="bad.jsonl:2"):
        run(LoadSpec(target=s.url, dataset=str(bad)), None)
