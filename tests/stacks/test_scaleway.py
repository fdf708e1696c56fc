"""The Scaleway stack program under Pulumi mocks, built from the seed's Scaleway example (+ a project id)."""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import datetime, timedelta

import pytest
from stackhelp import HF_TOKEN, OPERATOR, WORLD, cloud_config, make_cfg, make_ctx, run, secret_needles

from benchctl.errors import ConfigError
from stacks.cloudinit import GUARD_SCRIPT
from stacks.common import OUTPUT_KEYS
from stacks.scaleway import AUTH_HEADER_PATH, self_terminate_step

PROJECT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def seed_run():
    ctx = make_ctx(make_cfg("scaleway"))
    return run(ctx), ctx


def test_resource_set(seed_run):
    result, _ = seed_run
    assert Counter(r.type for r in result.resources) == Counter({
        "pulumi:providers:scaleway": 1, "scaleway:iam/sshKey:SshKey": 1, "scaleway:instance/ip:Ip": 2,
        "scaleway:instance/securityGroup:SecurityGroup": 2, "scaleway:iam/application:Application": 1,
        "scaleway:iam/policy:Policy": 1, "scaleway:iam/apiKey:ApiKey": 1, "scaleway:instance/server:Server": 2,
    })
    # Current module names only: nothing from the deprecated flat `scaleway:index/...` tokens.
    assert not [r.type for r in result.resources if r.type.startswith("scaleway:index/")]
    assert all("pulumi:providers:scaleway::scaleway::" in r.provider for r in result.resources
               if not r.type.startswith("pulumi:providers:"))


def test_servers(seed_run):
    result, _ = seed_run
    gpu, launcher = result.named("gpu").plain(), result.named("launcher").plain()
    assert (gpu["type"], gpu["image"]) == ("GPU-3070-S", "ubuntu_jammy_gpu_os_12")
    assert (launcher["type"], launcher["image"]) == ("DEV1-S", "ubuntu_jammy")
    assert gpu["rootVolume"] == {"sizeInGb": 100, "deleteOnTermination": True}
    assert "rootVolume" not in launcher
    assert (gpu["ipId"], gpu["securityGroupId"]) == ("gpu-ip-id", "server-sg-id")
    assert (launcher["ipId"], launcher["securityGroupId"]) == ("launcher-ip-id", "launcher-sg-id")
    for server in (gpu, launcher):
        assert (server["zone"], server["projectId"]) == ("fr-par-1", PROJECT)
    for ip in result.of_type("instance/ip:Ip"):
        assert ip.plain()["type"] == "routed_ipv4"


def test_security_groups_drop_all_but_operator_ssh_and_launcher_engine(seed_run):
    result, _ = seed_run
    groups = {r.name: r.plain() for r in result.of_type("instance/securityGroup:SecurityGroup")}
    launcher_address = result.outputs["launcher_host"]
    for group in groups.values():
        assert group["inboundDefaultPolicy"] == "drop" and group["stateful"] is True
        for rule in group["inboundRules"]:
            # A rule without ip/ipRange would apply to every address.
            assert rule["action"] == "accept" and rule.get("ipRange") and rule["ipRange"] not in WORLD
    assert groups["launcher-sg"]["inboundRules"] == [
        {"action": "accept", "protocol": "TCP", "port": 22, "ipRange": OPERATOR}]
    assert groups["server-sg"]["inboundRules"] == [
        {"action": "accept", "protocol": "TCP", "port": 22, "ipRange": OPERATOR},
        {"action": "accept", "protocol": "TCP", "port": 8000, "ipRange": f"{launcher_address}/32"},
    ]


def test_ssh_open_to_the_world_only_when_asked():
    result = run(make_ctx(make_cfg("scaleway", ssh_cidr="0.0.0.0/0"), operator_cidr="0.0.0.0/0"))
    rules = result.named("server-sg").plain()["inboundRules"]
    assert rules[0]["ipRange"] == "0.0.0.0/0" and rules[1]["ipRange"].endswith("/32")


def test_secrets_are_marked_secret(seed_run):
    result, ctx = seed_run
    provider = result.named("scaleway")
    assert provider.masked()["accessKey"] == provider.masked()["secretKey"] == "[secret]"
    assert provider.plain()["secretKey"] == "YOUR_SCALEWAY_SECRET_KEY"
    for name in ("gpu", "launcher"):
        server = result.named(name)
        assert server.masked()["userData"] == "[secret]"
        doc = cloud_config(server.plain()["userData"]["cloud-init"])
        assert doc["ssh_keys"]["ed25519_public"] == ctx.host_key_public
        assert doc["disable_root"] is False and doc["ssh_authorized_keys"] == [ctx.ssh_public_key]
        files = {f["path"]: f for f in doc["write_files"]}
        # The guard's API key (the mock's secret) reaches the host only in a root-only file.
        assert files[AUTH_HEADER_PATH]["content"] == "X-Auth-Token: 00000000-0000-0000-0000-000000000000\n"
        assert files[AUTH_HEADER_PATH]["permissions"] == "0600"
        assert not [n for n in [*secret_needles(ctx), "YOUR_SCALEWAY_SECRET_KEY"] if n in str(server.masked())]
    assert HF_TOKEN in result.named("gpu").plain()["userData"]["cloud-init"]


def test_guard_key_is_scoped_to_the_project_and_expires(seed_run):
    result, ctx = seed_run
    policy = result.named("guard-policy").plain()
    assert policy["rules"] == [{"permissionSetNames": ["InstancesFullAccess"], "projectIds": [PROJECT]}]
    assert policy["applicationId"] == "guard-app-id"
    key = result.named("guard-key").plain()
    assert key["applicationId"] == "guard-app-id"
    expires = datetime.fromisoformat(key["expiresAt"].replace("Z", "+00:00"))
    assert expires - datetime.fromisoformat(ctx.expires_at) == timedelta(hours=1)
    assert result.named("guard-app").plain()["organizationId"] == f"<organization of project {PROJECT}>"


def test_guard_terminates_through_the_api_before_powering_off(seed_run):
    result, _ = seed_run
    doc = cloud_config(result.named("gpu").plain()["userData"]["cloud-init"])
    guard = next(f["content"] for f in doc["write_files"] if f["path"] == GUARD_SCRIPT)
    assert guard.index("servers/$SERVER_ID/action") < guard.index("systemctl poweroff")
    assert "/instance/v1/zones/fr-par-1/" in guard and f"-H @{AUTH_HEADER_PATH}" in guard
    assert subprocess.run(["bash", "-n"], input=self_terminate_step("nl-ams-1"), text=True).returncode == 0


def test_tags_carry_expiry(seed_run):
    result, ctx = seed_run
    expected = [f"{k}={v}" for k, v in ctx.tags().items()]
    assert f"benchctl:expires_at={ctx.expires_at}" in expected
    tagged = [r for r in result.resources if r.type in (
        "scaleway:instance/server:Server", "scaleway:instance/ip:Ip", "scaleway:instance/securityGroup:SecurityGroup",
        "scaleway:iam/application:Application", "scaleway:iam/policy:Policy")]
    assert len(tagged) == 8
    for r in tagged:
        assert r.plain()["tags"] == expected, r.name


def test_project_id_is_required_and_spot_refused():
    with pytest.raises(ConfigError, match="project_id"):
        run(make_ctx(make_cfg("scaleway", project_id=None)))
    with pytest.raises(ConfigError, match="no spot market"):
        run(make_ctx(make_cfg("scaleway", market="spot")))


def test_outputs_contract(seed_run):
    result, _ = seed_run
    out = result.outputs
    assert set(OUTPUT_KEYS) <= set(out)
    assert out["server_host"].startswith("198.51.100.") and out["server_host"] != out["launcher_host"]
    assert out["engine_url"] == f"http://{out['server_host']}:8000/v1"
    assert out["server_ssh_user"] == out["launcher_ssh_user"] == "root"
    assert (out["gpu_instance_type"], out["launcher_instance_type"]) == ("GPU-3070-S", "DEV1-S")
