"""The AWS stack program under Pulumi mocks, built from the seed's AWS example."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from stackhelp import HF_TOKEN, OPERATOR, WORLD, make_cfg, make_ctx, run, secret_needles

from benchctl.plan import MockRun
from stacks.common import OUTPUT_KEYS, fingerprint

INSTANCE = "aws:ec2/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


@pytest.fixture(scope="module")
def seed_run() -> tuple[MockRun, object]:
    ctx = make_ctx(make_cfg("aws"))
    return run(ctx), ctx


def test_resource_set(seed_run):
    result, _ = seed_run
    assert Counter(r.type for r in result.resources) == Counter({
        "pulumi:providers:aws": 1, "aws:ec2/keyPair:KeyPair": 1, "aws:ec2/securityGroup:SecurityGroup": 2,
        INGRESS: 3, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 2, INSTANCE: 2,
    })
    # Everything goes through the explicit provider: no default provider picks up ambient settings.
    for r in result.resources:
        if not r.type.startswith("pulumi:providers:"):
            assert "pulumi:providers:aws::aws::" in r.provider, r.name


def test_gpu_and_launcher_settings(seed_run):
    result, _ = seed_run
    gpu, launcher = result.named("gpu").plain(), result.named("launcher").plain()
    assert gpu["instanceType"] == "g4dn.xlarge" and gpu["ami"] == "ami-072c3e2520d9af5fa"
    assert launcher["instanceType"] == "t3.micro" and launcher["ami"] == "ami-04f3f32777c02a5b3"
    for inst in (gpu, launcher):
        assert inst["instanceInitiatedShutdownBehavior"] == "terminate"
        assert inst["metadataOptions"]["httpTokens"] == "required"
        assert inst["rootBlockDevice"]["encrypted"] is True
        assert inst["rootBlockDevice"]["deleteOnTermination"] is True
        assert inst["associatePublicIpAddress"] is True
        assert inst["keyName"] == "benchctl-seed-bench-mock"
        assert "instanceMarketOptions" not in inst
    assert gpu["rootBlockDevice"]["volumeSize"] == 100   # 8B model: the 100 GB minimum
    assert launcher["rootBlockDevice"]["volumeSize"] == 20
    assert gpu["vpcSecurityGroupIds"] == ["server-sg-id"]
    assert launcher["vpcSecurityGroupIds"] == ["launcher-sg-id"]
    assert gpu["subnetId"] == launcher["subnetId"] == "<default subnet in <a zone offering both types>>"


def test_provider_uses_profile_and_region(seed_run):
    result, _ = seed_run
    provider = result.named("aws").plain()
    assert provider["region"] == "us-east-1" and provider["profile"] == "my-aws-profile"
    assert "accessKey" not in provider


def test_ssh_only_from_operator_and_engine_only_from_launcher(seed_run):
    result, _ = seed_run
    rules = {r.name: r.plain() for r in result.of_type("SecurityGroupIngressRule")}
    assert set(rules) == {"server-ssh", "launcher-ssh", "server-engine"}
    for name in ("server-ssh", "launcher-ssh"):
        assert (rules[name]["cidrIpv4"], rules[name]["fromPort"], rules[name]["toPort"]) == (OPERATOR, 22, 22)
    engine = rules["server-engine"]
    assert engine["securityGroupId"] == "server-sg-id"
    assert engine["referencedSecurityGroupId"] == "launcher-sg-id"
    assert (engine["fromPort"], engine["toPort"]) == (8000, 8000)
    assert "cidrIpv4" not in engine and "cidrIpv6" not in engine
    assert not [r for r in rules.values() if r.get("cidrIpv4") in WORLD or r.get("cidrIpv6") in WORLD]


def test_ssh_open_to_the_world_only_when_asked():
    result = run(make_ctx(make_cfg("aws", ssh_cidr="0.0.0.0/0"), operator_cidr="0.0.0.0/0"))
    rules = {r.name: r.plain() for r in result.of_type("SecurityGroupIngressRule")}
    assert rules["server-ssh"]["cidrIpv4"] == rules["launcher-ssh"]["cidrIpv4"] == "0.0.0.0/0"
    assert "cidrIpv4" not in rules["server-engine"]   # the engine port still only from the launcher


def test_ipv6_operator_gets_an_ipv6_rule():
    result = run(make_ctx(make_cfg("aws"), operator_cidr="2001:db8::7/128"))
    ssh = result.named("server-ssh").plain()
    assert ssh["cidrIpv6"] == "2001:db8::7/128" and "cidrIpv4" not in ssh


def test_secrets_are_marked_secret():
    cfg = make_cfg("aws", profile_name=None, access_key="AKIAFAKEFAKEFAKE", secret_key="s3cr3t/FAKE/key")
    ctx = make_ctx(cfg)
    result = run(ctx)
    provider = result.named("aws")
    assert provider.masked()["accessKey"] == provider.masked()["secretKey"] == "[secret]"
    assert provider.plain()["secretKey"] == "s3cr3t/FAKE/key" and "profile" not in provider.plain()
    for name in ("gpu", "launcher"):
        inst = result.named(name)
        assert inst.masked()["userData"] == "[secret]"
        user_data = inst.plain()["userData"]
        assert user_data.startswith("#cloud-config") and ctx.host_key_public in user_data
        masked = str(inst.masked())
        assert not [n for n in secret_needles(ctx) if n in masked]
    assert HF_TOKEN in result.named("gpu").plain()["userData"]
    assert HF_TOKEN not in result.named("launcher").plain()["userData"]
    assert "s3cr3t/FAKE/key" not in str([r.masked() for r in result.resources])
    assert {"ssh_private_key", "host_key_private"} <= result.secret_outputs


def test_tags_carry_expiry_and_name(seed_run):
    result, ctx = seed_run
    taggable = [r for r in result.resources if not r.type.startswith("pulumi:providers:")]
    for r in taggable:
        tags = r.plain()["tags"]
        assert tags["benchctl:expires_at"] == ctx.expires_at, r.name
        assert tags["benchctl:bench_id"] == "seed-bench" and tags["benchctl:owner"] == "alice"
    assert result.named("gpu").plain()["tags"]["Name"] == "benchctl-seed-bench-gpu"
    assert result.named("gpu").plain()["rootBlockDevice"]["tags"]["benchctl:expires_at"] == ctx.expires_at
    assert datetime.fromisoformat(ctx.expires_at) - datetime.fromisoformat(ctx.created_at) == ctx.cfg.lifetime


def test_outputs_contract(seed_run):
    result, ctx = seed_run
    out = result.outputs
    assert set(OUTPUT_KEYS) <= set(out)
    gpu = result.named("gpu")
    assert out["server_host"].startswith("203.0.113.") and out["launcher_host"].startswith("203.0.113.")
    assert out["server_host"] != out["launcher_host"]
    assert out["engine_url"].startswith("http://10.0.0.") and out["engine_url"].endswith(":8000/v1")
    assert out["server_ssh_user"] == out["launcher_ssh_user"] == "ubuntu"
    assert out["server_host_key_fingerprint"] == fingerprint(ctx.host_key_public)
    assert (out["gpu_instance_type"], out["launcher_instance_type"]) == ("g4dn.xlarge", "t3.micro")
    assert gpu.type == INSTANCE


def test_ami_lookup_and_spot_when_not_given():
    cfg = make_cfg("aws", gpu_ami=None, cpu_ami=None, market="spot", instance_type="g5g.xlarge",
                   launcher_instance_type="t3.micro")
    result = run(make_ctx(cfg))
    gpu, launcher = result.named("gpu").plain(), result.named("launcher").plain()
    assert "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)" in gpu["ami"]
    assert "898082745236" in gpu["ami"]
    assert "ubuntu-jammy-22.04-amd64-server" in launcher["ami"] and "099720109477" in launcher["ami"]
    amis = [args for token, args, _ in result.calls if token == "aws:ec2/getAmi:getAmi"]
    assert sorted(a["filters"][1]["values"][0] for a in amis) == ["arm64", "x86_64"]
    assert all(a["mostRecent"] for a in amis)
    assert all("pulumi:providers:aws::aws::" in p for _, _, p in result.calls)
    assert gpu["instanceMarketOptions"]["marketType"] == "spot"
    assert gpu["instanceMarketOptions"]["spotOptions"]["instanceInterruptionBehavior"] == "terminate"
    assert "instanceMarketOptions" not in launcher   # the launcher must outlive a spot interruption


def test_given_subnet_is_used_and_its_vpc_holds_the_groups():
    result = run(make_ctx(make_cfg("aws", subnet_id="subnet-0123")))
    assert result.named("gpu").plain()["subnetId"] == "subnet-0123"
    assert result.named("server-sg").plain()["vpcId"] == "<VPC of subnet-0123>"
    assert "aws:ec2/getVpc:getVpc" not in [token for token, _, _ in result.calls]


def test_root_volume_follows_the_model_or_the_config():
    big = run(make_ctx(make_cfg("aws", top={"model": "meta-llama/Llama-3.1-70B-Instruct"})))
    assert big.named("gpu").plain()["rootBlockDevice"]["volumeSize"] == 235
    fixed = run(make_ctx(make_cfg("aws", root_volume_gb=400)))
    assert fixed.named("gpu").plain()["rootBlockDevice"]["volumeSize"] == 400
