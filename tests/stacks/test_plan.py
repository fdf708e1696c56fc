"""The offline plan: the real programs under mocks, for each seed example, with cost and masked secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
from click.testing import CliRunner
from stackhelp import make_cfg

from benchctl import pricing
from benchctl.cli import main
from benchctl.config import load_config
from benchctl.plan import offline_plan, render_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Seed example -> (expected USD/hour, the instances it is made of)
EXPECTED = {
    "aws-g4dn.toml": (0.5364, ["g4dn.xlarge", "t3.micro"]),
    "gcp-t4.toml": (0.7384, ["n1-standard-8 + 1 x nvidia-tesla-t4", "e2-micro"]),
    "scaleway-3070.toml": (1.1371, ["GPU-3070-S", "DEV1-S"]),
}


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SCW_ACCESS_KEY", "SCW_SECRET_KEY",
                 "SCW_DEFAULT_PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT",
                 "GOOGLE_APPLICATION_CREDENTIALS", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_plan_of_each_seed_example(example):
    plan = offline_plan(load_config(EXAMPLES / example))
    text = json.dumps(plan)
    assert {"provider", "bench_id", "resources", "estimated_hourly_cost_usd", "price_table_date", "notes"} <= set(plan)
    cost, instances = EXPECTED[example]
    assert plan["estimated_hourly_cost_usd"] == pytest.approx(cost, abs=1e-4)
    assert sorted(i["type"] for i in plan["instances"]) == sorted(instances)
    assert plan["price_table_date"] == pricing.PRICE_TABLE_DATE
    assert all(set(r) == {"type", "name", "inputs"} for r in plan["resources"])
    servers = [r for r in plan["resources"] if r["type"].split(":")[-1] in ("Instance", "Server")]
    assert len(servers) == 2 and all("[secret]" in json.dumps(r["inputs"]) for r in servers)
    # No secret in the plan: no private key, no placeholder secret key, no HF token.
    assert "PRIVATE KEY" not in text and "YOUR_SCALEWAY_SECRET_KEY" not in text
    assert any("<your-ip>/32" in n for n in plan["notes"])


def test_plan_twice_in_one_process_leaves_no_pulumi_state():
    cfg = load_config(EXAMPLES / "aws-g4dn.toml")
    first, second = offline_plan(cfg), offline_plan(cfg)
    assert [r["name"] for r in first["resources"]] == [r["name"] for r in second["resources"]]
    assert pulumi.runtime.settings.get_root_resource() is None


def test_unknown_instance_type_gives_no_total():
    plan = offline_plan(make_cfg("aws", instance_type="x9.mega"))
    assert plan["estimated_hourly_cost_usd"] is None
    assert any("x9.mega: not in the price table" in n for n in plan["notes"])
    assert "Estimated cost: unknown" in render_plan(plan)


def test_placeholders_for_what_only_create_needs(tmp_path):
    plan = offline_plan(make_cfg("gcp", project=None, credentials_file=str(tmp_path / "missing.json")))
    provider = next(r for r in plan["resources"] if r["type"] == "pulumi:providers:gcp")
    assert provider["inputs"]["project"] == "<your-project>" and "credentials" not in provider["inputs"]
    assert any("missing.json is not readable here" in n for n in plan["notes"])


def test_spot_and_region_notes():
    plan = offline_plan(make_cfg("aws", market="spot", region="eu-west-1"))
    assert any("on-demand price (an upper bound)" in n for n in plan["notes"])
    assert any("eu-west-1 may be priced differently from us-east-1" in n for n in plan["notes"])


def test_render_plan():
    plan = offline_plan(load_config(EXAMPLES / "aws-g4dn.toml"))
    text = render_plan(plan)
    assert "+ aws:ec2/instance:Instance  gpu" in text and "instanceType = g4dn.xlarge" in text
    assert "userData = [secret]" in text and "cidrIpv4 = <your-ip>/32" in text
    assert "Estimated cost: $0.5364 per hour, at most $2.15 over max_lifetime = 4h" in text


def test_plan_command():
    runner = CliRunner()
    result = runner.invoke(main, ["plan", "-c", str(EXAMPLES / "gcp-t4.toml"), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["provider"] == "gcp" and plan["estimated_hourly_cost_usd"] == pytest.approx(0.7384, abs=1e-4)
    text = runner.invoke(main, ["plan", "-c", str(EXAMPLES / "scaleway-3070.toml")])
    assert text.exit_code == 0 and "scaleway:instance/server:Server  gpu" in text.stdout


def test_plan_refuses_the_simulator_on_a_cloud(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text((EXAMPLES / "aws-g4dn.toml").read_text().replace('"vllm"', '"simulator"'))
    result = CliRunner().invoke(main, ["plan", "-c", str(path)])
    assert result.exit_code == 2 and "only with provider = 'local'" in result.output
