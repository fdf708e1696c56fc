"""GCP: a GPU model server and a CPU launcher on Compute Engine, reachable only from the operator.

Created (labelled with `ctx.labels()`, through one explicit provider):
- firewall rules on `[gcp].network`, by network tags unique to this bench: SSH from
  `ctx.operator_cidr` to both instances, the engine port from the launcher's tag to the server's tag,
  and a lower-priority deny of both ports from anywhere else, which overrides the default network's
  `default-allow-ssh` (0.0.0.0/0) and `default-allow-internal` rules for these two instances;
- the two instances, each deleted by Compute Engine itself after `max_lifetime`
  (`max_run_duration` + `instance_termination_action = "DELETE"`).

Instance types: a plain machine type ("e2-micro", "a2-highgpu-1g"), or the seed's notation
"<machine type>-<accelerator>[-x<count>]": "n1-standard-8-nvidia-tesla-t4" is an n1-standard-8
with one nvidia-tesla-t4, "n1-standard-16-nvidia-tesla-t4-x2" has two. Accelerator-optimized
families (a2, a3, a4, g2, g4) carry their GPUs. Any GPU means `on_host_maintenance = "TERMINATE"`
and no automatic restart, as Compute Engine requires.

Images: the GPU host boots the Deep Learning VM family `[gcp].image_family` from
`[gcp].image_project` (default below; families change, list them with
`gcloud compute images list --project deeplearning-platform-release --no-standard-images`), the
launcher the Ubuntu 22.04 LTS family.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pulumi

with warnings.catch_warnings():
    # A few deprecated resource modules warn when these modules load.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_gcp as gcp
    from pulumi_gcp import compute

    _LOADED = (compute.Instance,)  # the SDK loads modules on first use: load them here

from benchctl.errors import ConfigError
from stacks import cloudinit, engines, sizing
from stacks.common import Endpoint, StackContext, export_outputs
from stacks.gcp_machine import MachineSpec, parse_instance_type

DLVM_PROJECT = "deeplearning-platform-release"
DLVM_FAMILY = "common-cu128-ubuntu-2204-nvidia-570"
UBUNTU_PROJECT = "ubuntu-os-cloud"
UBUNTU_FAMILY = "ubuntu-2204-lts"
SSH_USER = "ubuntu"
# The guard's own power-off comes after Compute Engine's deletion, never before it.
GUARD_GRACE_MINUTES = 15
def _provider(ctx: StackContext) -> gcp.Provider:
    cfg = ctx.cfg.gcp
    assert cfg is not None
    if not cfg.project:
        raise ConfigError("[gcp].project is required (or set GOOGLE_CLOUD_PROJECT)")
    credentials = None
    if cfg.credentials_file:
        path = Path(cfg.credentials_file).expanduser()
        try:
            credentials = pulumi.Output.secret(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"[gcp].credentials_file {path}: cannot read: {exc.strerror}") from None
    # Without a file the provider uses application-default credentials (gcloud auth application-default login).
    return gcp.Provider("gcp", project=cfg.project, region=cfg.region, zone=cfg.effective_zone(),
                        credentials=credentials)


def _scheduling(spec: MachineSpec, spot: bool, lifetime_s: int) -> compute.InstanceSchedulingArgs:
    terminate = spec.has_gpu or spot
    return compute.InstanceSchedulingArgs(
        on_host_maintenance="TERMINATE" if terminate else "MIGRATE",
        automatic_restart=not terminate,
        provisioning_model="SPOT" if spot else "STANDARD",
        preemptible=spot,
        instance_termination_action="DELETE",
        max_run_duration=compute.InstanceSchedulingMaxRunDurationArgs(seconds=lifetime_s),
    )


def _public_ip(nics: Sequence[compute.outputs.InstanceNetworkInterface]) -> str:
    access = nics[0].access_configs or []
    return (access[0].nat_ip if access else None) or ""


def program(ctx: StackContext) -> None:
    """Create the GCP stack for `ctx` and export the outputs contract."""
    cfg = ctx.cfg.gcp
    if cfg is None:
        raise ConfigError("provider = 'gcp' needs a [gcp] section")
    engines.engine_spec(ctx.cfg)  # refuses engines a cloud host cannot run, before anything is created
    bench = ctx.cfg.bench_id
    port = ctx.cfg.engine_port
    provider = _provider(ctx)
    opts = pulumi.ResourceOptions(provider=provider)
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    labels = ctx.labels()
    server_tag, launcher_tag = f"bc-{bench}-server", f"bc-{bench}-launcher"

    compute.Firewall(
        f"{bench}-ssh", network=cfg.network, direction="INGRESS", priority=1000,
        allows=[compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
        source_ranges=[ctx.operator_cidr], target_tags=[server_tag, launcher_tag],
        description=f"benchctl {bench}: SSH from the operator", opts=opts,
    )
    compute.Firewall(
        f"{bench}-engine", network=cfg.network, direction="INGRESS", priority=1000,
        allows=[compute.FirewallAllowArgs(protocol="tcp", ports=[str(port)])],
        source_tags=[launcher_tag], target_tags=[server_tag],
        description=f"benchctl {bench}: engine port from the launcher only", opts=opts,
    )
    compute.Firewall(
        f"{bench}-deny", network=cfg.network, direction="INGRESS", priority=1100,
        denies=[compute.FirewallDenyArgs(protocol="tcp", ports=["22", str(port)])],
        source_ranges=["0.0.0.0/0"], target_tags=[server_tag, launcher_tag],
        description=f"benchctl {bench}: nobody else (overrides the default network's allow rules)", opts=opts,
    )

    gpu_image = compute.get_image_output(
        family=cfg.image_family or DLVM_FAMILY, project=cfg.image_project or DLVM_PROJECT, opts=invoke)
    cpu_image = compute.get_image_output(family=UBUNTU_FAMILY, project=UBUNTU_PROJECT, opts=invoke)
    guard = cloudinit.Guard(grace_minutes=GUARD_GRACE_MINUTES)
    # The guest agent would otherwise replace the pinned host key with fresh ones on first boot.
    keep_host_keys = cloudinit.File("/etc/default/instance_configs.cfg",
                                    "[InstanceSetup]\nset_host_keys = false\n", "0644")

    def instance(role: str, value: str, image: pulumi.Input[str], tag: str, disk_gb: int,
                 spot: bool) -> compute.Instance:
        spec = parse_instance_type(value)
        user_data = cloudinit.secret_user_data(
            ctx, role="server" if role == "gpu" else "launcher", ssh_user=SSH_USER, guard=guard,
            files=(keep_host_keys,))
        metadata: dict[str, pulumi.Input[str]] = {
            "ssh-keys": f"{SSH_USER}:{ctx.ssh_public_key}",
            "block-project-ssh-keys": "true",
            "user-data": user_data,
        }
        if spec.has_gpu:
            metadata["install-nvidia-driver"] = "True"
        return compute.Instance(
            f"{bench}-{role}", machine_type=spec.machine_type, zone=cfg.effective_zone(),
            boot_disk=compute.InstanceBootDiskArgs(
                auto_delete=True,
                initialize_params=compute.InstanceBootDiskInitializeParamsArgs(
                    image=image, size=disk_gb, type="pd-balanced", labels=labels)),
            network_interfaces=[compute.InstanceNetworkInterfaceArgs(
                network=cfg.network, access_configs=[compute.InstanceNetworkInterfaceAccessConfigArgs()])],
            guest_accelerators=[compute.InstanceGuestAcceleratorArgs(type=spec.accelerator, count=spec.count)]
            if spec.accelerator else None,
            scheduling=_scheduling(spec, spot, ctx.lifetime_seconds),
            metadata=metadata, tags=[tag], labels=labels, allow_stopping_for_update=True, opts=opts,
        )

    gpu = instance("gpu", cfg.instance_type, gpu_image.self_link, server_tag, sizing.gpu_disk_gb(ctx.cfg),
                   spot=cfg.market == "spot")
    launcher = instance("launcher", cfg.launcher_instance_type, cpu_image.self_link, launcher_tag,
                        sizing.LAUNCHER_GB, spot=False)

    private_ip = gpu.network_interfaces.apply(lambda nics: nics[0].network_ip or "")
    export_outputs(
        ctx,
        server=Endpoint(host=gpu.network_interfaces.apply(_public_ip), port=22, user=SSH_USER),
        launcher=Endpoint(host=launcher.network_interfaces.apply(_public_ip), port=22, user=SSH_USER),
        engine_url=private_ip.apply(lambda ip: f"http://{ip}:{port}/v1"),
        gpu_instance_type=cfg.instance_type,
        launcher_instance_type=cfg.launcher_instance_type,
    )
