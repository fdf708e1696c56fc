"""`benchctl compare`: runs side by side, with the cost of a million output tokens."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from benchctl.cli import main
from benchctl.pricing import gpu_host_hourly_usd
from benchctl.results import usd_per_million_output_tokens, write_run_info


def fake_run(root: Path, bench_id: str, provider: str, gpu: str, tok_s: float) -> Path:
    directory = root / "results" / bench_id / "20261203T120000Z"
    directory.mkdir(parents=True)
    point = {"concurrency": 16, "rate": None, "requests": {"completed": 200, "failed": 0},
             "requests_per_s": tok_s / 64, "output_tokens_per_s": tok_s, "ttft_ms": {"p50": 80.0},
             "tpot_ms": {"p50": 12.0}, "e2e_ms": {"p99": 900.0}, "client": {"bound": False}}
    (directory / "summary.json").write_text(json.dumps({"schema": "benchctl.summary/v1", "points": [point]}))
    write_run_info(directory, {"bench_id": bench_id, "provider": provider, "engine": "vllm", "model": "m",
                               "gpu_instance_type": gpu, "launcher_instance_type": "t3.micro"})
    return directory


def test_gcp_seed_notation_is_priced_as_machine_plus_gpus() -> None:
    machine = gpu_host_hourly_usd("gcp", "n1-standard-8")
    assert machine is not None
    one_t4 = gpu_host_hourly_usd("gcp", "n1-standard-8-nvidia-tesla-t4")
    two_t4 = gpu_host_hourly_usd("gcp", "n1-standard-8-nvidia-tesla-t4-x2")
    assert one_t4 is not None and two_t4 is not None
    assert round(two_t4 - one_t4, 6) == round(one_t4 - machine, 6) > 0  # each T4 adds the same price
    assert gpu_host_hourly_usd("gcp", "n1-standard-8-nvidia-unknown-gpu") is None


def test_cost_per_million_tokens_formula() -> None:
    # $3.60/h at 1,000 tok/s = 3.6M tokens per hour -> $1 per million.
    assert usd_per_million_output_tokens(3.6, 1000.0) == 1.0
    assert usd_per_million_output_tokens(None, 1000.0) is None
    assert usd_per_million_output_tokens(3.6, 0.0) is None


def test_compare_two_clouds(tmp_path: Path) -> None:
    aws = fake_run(tmp_path, "llama-g4dn", "aws", "g4dn.xlarge", 800.0)
    gcp = fake_run(tmp_path, "llama-t4", "gcp", "n1-standard-8-nvidia-tesla-t4", 1000.0)
    result = CliRunner().invoke(main, ["compare", "--json", str(aws), str(gcp / "summary.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["gpu"] for r in rows] == ["g4dn.xlarge", "n1-standard-8-nvidia-tesla-t4"]
    g4dn_hourly = gpu_host_hourly_usd("aws", "g4dn.xlarge")
    assert g4dn_hourly is not None
    assert rows[0]["usd_per_million_output_tokens"] == round(g4dn_hourly / (800.0 * 3600) * 1e6, 4)
    table = CliRunner().invoke(main, ["compare", str(aws), str(gcp)]).stdout
    assert "llama-g4dn/20261203T120000Z" in table and "$/1M out tok" in table


def test_local_runs_have_no_price(tmp_path: Path) -> None:
    local = fake_run(tmp_path, "local-demo", "local", "local", 2000.0)
    rows = json.loads(CliRunner().invoke(main, ["compare", "--json", str(local)]).stdout)
    assert rows[0]["gpu_hourly_usd"] is None and rows[0]["usd_per_million_output_tokens"] is None


def test_compare_rejects_what_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compare", str(tmp_path)])
    assert result.exit_code == 2
    assert "expected a results directory" in result.stderr
