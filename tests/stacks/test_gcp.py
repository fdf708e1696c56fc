"""The GCP stack program under Pulumi mocks, built from the seed's GCP example (+ a project)."""

from __future__ import annotations

from collections import Counter

import pytest
from stackhelp import HF_TOKEN, OPERATOR, WORLD, cloud_config, make_cfg, make_ctx, run, secret_needles

from benchctl.errors import ConfigError
from stacks.common import OUTPUT_KEYS
from stacks.gcp import MachineSpec, parse_instance_type

FIREWALL = "gcp:compute/firewall:Firewall"


@pytest.fixture(scope="module")
def seed_run():
    ctx = make_ctx(make_cfg("gcp"))
    return run(ctx), ctx


@pytest.mark.parametrize(("value", "spec"), [
    ("n1-standard-8-nvidia-tesla-t4", MachineSpec("n1-standard-8", "nvidia-tesla-t4", 1)),
    ("n1-standard-16-nvidia-tesla-v100-x2", MachineSpec("n1-standard-16", "nvidia-tesla-v100", 2)),
    ("a2-highgpu-1g", MachineSpec("a2-highgpu-1g")),
    ("e2-micro", MachineSpec("e2-micro")),
])
def test_seed_notation(value, spec):
    assert parse_instance_type(value) == spec


def test_gpu_presence():
    assert parse_instance_type("n1-standard-8-nvidia-tesla-t4").has_gpu
    assert parse_instance_type("g2-standard-8").has_gpu and parse_instance_type("a3-highgpu-8g").has_gpu
    assert not parse_instance_type("e2-micro").has_gpu


def test_resource_set(seed_run):
    result, _ = seed_run
    assert Counter(r.type for r in result.resources) == Counter(
        {"pulumi:providers:gcp": 1, FIREWALL: 3, "gcp:compute/instance:Instance": 2})
    assert all("pulumi:providers:gcp::gcp::" in r.provider for r in result.resources
               if not r.type.startswith("pulumi:providers:"))
    provider = result.named("gcp").plain()
    assert (provider["project"], provider["region"], provider["zone"]) == ("bench-project", "us-central1",
                                                                          "us-central1-a")


def test_gpu_host_gets_the_t4_and_gpu_scheduling(seed_run):
    result, ctx = seed_run
    gpu = result.named("seed-bench-gpu").plain()
    assert gpu["machineType"] == "n1-standard-8"
    assert gpu["guestAccelerators"] == [{"type": "nvidia-tesla-t4", "count": 1}]
    sched = gpu["scheduling"]
    assert sched["onHostMaintenance"] == "TERMINATE" and sched["automaticRestart"] is False
    assert sched["provisioningModel"] == "STANDARD"
    assert sched["instanceTerminationAction"] == "DELETE"
    assert sched["maxRunDuration"] == {"seconds": ctx.lifetime_seconds}
    disk = gpu["bootDisk"]["initializeParams"]
    assert disk["size"] == 100
    assert disk["image"] == ("<latest image of family common-cu128-ubuntu-2204-nvidia-570 "
                             "in project deeplearning-platform-release>")
    assert gpu["metadata"]["install-nvidia-driver"] == "True"


def test_launcher_is_a_plain_vm_with_the_same_lifetime(seed_run):
    result, ctx = seed_run
    launcher = result.named("seed-bench-launcher").plain()
    assert launcher["machineType"] == "e2-micro" and "guestAccelerators" not in launcher
    assert launcher["scheduling"]["onHostMaintenance"] == "MIGRATE"
    assert launcher["scheduling"]["maxRunDuration"] == {"seconds": ctx.lifetime_seconds}
    assert launcher["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert launcher["bootDisk"]["initializeParams"]["image"].startswith("<latest image of family ubuntu-2204-lts")
    assert "install-nvidia-driver" not in launcher["metadata"]


def test_spot_and_built_in_gpus():
    result = run(make_ctx(make_cfg("gcp", instance_type="g2-standard-8", market="spot")))
    gpu = result.named("seed-bench-gpu").plain()
    assert gpu["machineType"] == "g2-standard-8" and "guestAccelerators" not in gpu
    sched = gpu["scheduling"]
    assert (sched["provisioningModel"], sched["preemptible"]) == ("SPOT", True)
    assert (sched["onHostMaintenance"], sched["automaticRestart"]) == ("TERMINATE", False)
    launcher = result.named("seed-bench-launcher").plain()
    assert launcher["scheduling"]["provisioningModel"] == "STANDARD"


def _rules(result):
    return {r.name: r.plain() for r in result.of_type("compute/firewall:Firewall")}


def test_firewall_ssh_from_operator_engine_from_launcher(seed_run):
    result, _ = seed_run
    rules = _rules(result)
    server_tag, launcher_tag = "bc-seed-bench-server", "bc-seed-bench-launcher"
    ssh, engine, deny = rules["seed-bench-ssh"], rules["seed-bench-engine"], rules["seed-bench-deny"]
    assert ssh["sourceRanges"] == [OPERATOR] and ssh["allows"] == [{"protocol": "tcp", "ports": ["22"]}]
    assert sorted(ssh["targetTags"]) == sorted([server_tag, launcher_tag])
    assert engine["sourceTags"] == [launcher_tag] and engine["targetTags"] == [server_tag]
    assert engine["allows"] == [{"protocol": "tcp", "ports": ["8000"]}] and "sourceRanges" not in engine
    # The deny rule outranks the default network's allow-all rules (65534) but not our allows (1000).
    assert deny["denies"] == [{"protocol": "tcp", "ports": ["22", "8000"]}]
    assert ssh["priority"] < deny["priority"] < 65534 and engine["priority"] < deny["priority"]
    assert not [r for r in rules.values() if "allows" in r and set(r.get("sourceRanges", [])) & set(WORLD)]
    tags = {r.name: r.plain()["tags"] for r in result.of_type("compute/instance:Instance")}
    assert tags == {"seed-bench-gpu": [server_tag], "seed-bench-launcher": [launcher_tag]}


def test_ssh_open_to_the_world_only_when_asked():
    result = run(make_ctx(make_cfg("gcp", ssh_cidr="0.0.0.0/0"), operator_cidr="0.0.0.0/0"))
    rules = _rules(result)
    assert rules["seed-bench-ssh"]["sourceRanges"] == ["0.0.0.0/0"]
    assert rules["seed-bench-engine"]["sourceTags"] == ["bc-seed-bench-launcher"]


def test_metadata_is_secret_and_carries_keys(seed_run):
    result, ctx = seed_run
    for name in ("seed-bench-gpu", "seed-bench-launcher"):
        inst = result.named(name)
        assert inst.masked()["metadata"] == "[secret]"
        meta = inst.plain()["metadata"]
        assert meta["ssh-keys"] == f"ubuntu:{ctx.ssh_public_key}"
        assert meta["block-project-ssh-keys"] == "true"
        doc = cloud_config(meta["user-data"])
        assert doc["ssh_keys"]["ed25519_private"] == ctx.host_key_private
        files = {f["path"]: f["content"] for f in doc["write_files"]}
        assert files["/etc/default/instance_configs.cfg"] == "[InstanceSetup]\nset_host_keys = false\n"
        assert not [n for n in secret_needles(ctx) if n in str(inst.masked())]
    assert HF_TOKEN in result.named("seed-bench-gpu").plain()["metadata"]["user-data"]


def test_credentials_file_is_a_secret(tmp_path):
    key = tmp_path / "sa.json"
    key.write_text('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----FAKE"}')
    result = run(make_ctx(make_cfg("gcp", credentials_file=str(key))))
    provider = result.named("gcp")
    assert provider.masked()["credentials"] == "[secret]"
    assert provider.plain()["credentials"] == key.read_text()


def test_unreadable_credentials_file_and_missing_project_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="credentials_file"):
        run(make_ctx(make_cfg("gcp", credentials_file=str(tmp_path / "missing.json"))))
    with pytest.raises(ConfigError, match=r"\[gcp\].project"):
        run(make_ctx(make_cfg("gcp", project=None)))


def test_labels_carry_expiry(seed_run):
    result, ctx = seed_run
    expected = ctx.labels()
    for inst in result.of_type("compute/instance:Instance"):
        plain = inst.plain()
        assert plain["labels"] == expected
        assert plain["bootDisk"]["initializeParams"]["labels"] == expected
    assert expected["benchctl-expires-at"].startswith("2026-12-03t16")


def test_image_family_is_configurable():
    result = run(make_ctx(make_cfg("gcp", image_family="my-family", image_project="my-images")))
    image = result.named("seed-bench-gpu").plain()["bootDisk"]["initializeParams"]["image"]
    assert image == "<latest image of family my-family in project my-images>"


def test_outputs_contract(seed_run):
    result, _ = seed_run
    out = result.outputs
    assert set(OUTPUT_KEYS) <= set(out)
    assert out["server_host"].startswith("203.0.113.") and out["launcher_host"].startswith("203.0.113.")
    assert out["engine_url"].startswith("http://10.128.0.") and out["engine_url"].endswith(":8000/v1")
    assert out["server_ssh_user"] == "ubuntu"
    assert out["gpu_instance_type"] == "n1-standard-8-nvidia-tesla-t4"
