"""AWS: a GPU model server and a CPU launcher on EC2, reachable only from the operator.

Created (all tagged with `ctx.tags()` + Name, through one explicit provider):
- a key pair from the stack's operator key;
- two security groups in the default VPC (or the VPC of `subnet_id`): SSH from `ctx.operator_cidr`
  to both, the engine port on the server only from the launcher's security group, all egress;
- the two instances: IMDSv2 only, encrypted gp3 root volumes (the GPU one sized from the model, see
  `stacks.sizing`), `instance_initiated_shutdown_behavior = "terminate"` so the lifetime guard's
  power-off deletes them, optional spot for the GPU host (`market = "spot"`).

AMIs, when `gpu_ami`/`cpu_ami` are not set: the newest "Deep Learning Base OSS Nvidia Driver GPU AMI
(Ubuntu 22.04)" published by AWS (NVIDIA driver, Docker and the NVIDIA container toolkit), and the
newest Canonical Ubuntu 22.04 server image, for the instance type's architecture.

Without `subnet_id`, both instances go to the default subnet of an availability zone that offers
both instance types (GPU types exist only in some zones).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import pulumi

with warnings.catch_warnings():
    # A few deprecated resource modules warn when these modules load.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_aws as aws
    from pulumi_aws import ec2, vpc

    _LOADED = (ec2.Instance, vpc.SecurityGroupIngressRule)  # the SDK loads modules on first use: load them here

from benchctl.errors import ConfigError, ProvisionError
from stacks import cloudinit, engines, sizing
from stacks.common import Endpoint, StackContext, export_outputs

DLAMI_OWNER = "898082745236"   # Amazon (Deep Learning AMIs)
UBUNTU_OWNER = "099720109477"  # Canonical
DLAMI_NAMES = {
    "x86_64": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
    "arm64": "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
}
UBUNTU_NAMES = {
    "x86_64": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
    "arm64": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-*",
}
SSH_USER = "ubuntu"


def architecture(instance_type: str) -> str:
    """Graviton families carry a 'g' after the generation digit (t4g, m7g, g5g): arm64; the rest x86_64."""
    match = re.match(r"^[a-z]+\d+([a-z-]*)\.", instance_type)
    return "arm64" if match and "g" in match.group(1) else "x86_64"


def _ami(kind: str, instance_type: str, invoke: pulumi.InvokeOutputOptions) -> pulumi.Output[str]:
    arch = architecture(instance_type)
    owner, name = (DLAMI_OWNER, DLAMI_NAMES[arch]) if kind == "gpu" else (UBUNTU_OWNER, UBUNTU_NAMES[arch])
    return ec2.get_ami_output(
        owners=[owner], most_recent=True,
        filters=[{"name": "name", "values": [name]}, {"name": "architecture", "values": [arch]},
                 {"name": "state", "values": ["available"]}],
        opts=invoke,
    ).id


def _zones_offering(types: set[str], offered: Sequence[str], zones: Sequence[str], region: str) -> list[str]:
    by_zone: dict[str, set[str]] = {}
    for itype, zone in zip(offered, zones, strict=True):
        by_zone.setdefault(zone, set()).add(itype)
    both = sorted(z for z, have in by_zone.items() if types <= have)
    if not both:
        raise ProvisionError(f"no availability zone in {region} offers all of {sorted(types)}: "
                             "choose other instance types or set [aws].subnet_id")
    return both


def _network(ctx: StackContext, invoke: pulumi.InvokeOutputOptions) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """(vpc_id, subnet_id): the given subnet, or a default subnet in a zone offering both types."""
    cfg = ctx.cfg.aws
    assert cfg is not None
    if cfg.subnet_id:
        subnet = ec2.get_subnet_output(id=cfg.subnet_id, opts=invoke)
        return subnet.vpc_id, pulumi.Output.from_input(cfg.subnet_id)
    types = {cfg.instance_type, cfg.launcher_instance_type}
    default_vpc = ec2.get_vpc_output(default=True, opts=invoke)
    offers = ec2.get_instance_type_offerings_output(
        location_type="availability-zone", filters=[{"name": "instance-type", "values": sorted(types)}],
        opts=invoke,
    )
    zones = offers.apply(lambda o: _zones_offering(types, o.instance_types, o.locations, cfg.region))
    filters = pulumi.Output.all(default_vpc.id, zones).apply(lambda a: [
        ec2.GetSubnetsFilterArgs(name="vpc-id", values=[a[0]]),
        ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
        ec2.GetSubnetsFilterArgs(name="availability-zone", values=a[1]),
    ])
    subnets = ec2.get_subnets_output(filters=filters, opts=invoke)

    def first(ids: list[str]) -> str:
        if not ids:
            raise ProvisionError(f"the default VPC in {cfg.region} has no default subnet in a zone offering "
                                 f"{sorted(types)}: set [aws].subnet_id")
        return sorted(ids)[0]

    return default_vpc.id, subnets.ids.apply(first)


def _provider(ctx: StackContext) -> aws.Provider:
    cfg = ctx.cfg.aws
    assert cfg is not None
    if cfg.access_key is not None and cfg.secret_key is not None:
        return aws.Provider("aws", region=cfg.region,
                            access_key=pulumi.Output.secret(cfg.access_key.get_secret_value()),
                            secret_key=pulumi.Output.secret(cfg.secret_key.get_secret_value()))
    # A profile, or the default credential chain (environment, SSO, instance role).
    return aws.Provider("aws", region=cfg.region, profile=cfg.profile_name)


def _ssh_from_operator(name: str, sg: ec2.SecurityGroup, ctx: StackContext,
                       opts: pulumi.ResourceOptions) -> None:
    source = {"cidr_ipv6": ctx.operator_cidr} if ":" in ctx.operator_cidr else {"cidr_ipv4": ctx.operator_cidr}
    vpc.SecurityGroupIngressRule(
        name, security_group_id=sg.id, ip_protocol="tcp", from_port=22, to_port=22,
        description="SSH from the benchctl operator", tags=ctx.tags(), opts=opts, **source,
    )


def _all_egress(name: str, sg: ec2.SecurityGroup, ctx: StackContext, opts: pulumi.ResourceOptions) -> None:
    vpc.SecurityGroupEgressRule(
        name, security_group_id=sg.id, ip_protocol="-1", cidr_ipv4="0.0.0.0/0",
        description="downloads (images, weights, packages)", tags=ctx.tags(), opts=opts,
    )


def program(ctx: StackContext) -> None:
    """Create the AWS stack for `ctx` and export the outputs contract."""
    cfg = ctx.cfg.aws
    if cfg is None:
        raise ConfigError("provider = 'aws' needs an [aws] section")
    engines.engine_spec(ctx.cfg)  # refuses engines a cloud host cannot run, before anything is created
    bench = ctx.cfg.bench_id
    port = ctx.cfg.engine_port
    provider = _provider(ctx)
    opts = pulumi.ResourceOptions(provider=provider)
    invoke = pulumi.InvokeOutputOptions(provider=provider)

    def tags(role: str) -> dict[str, str]:
        return {**ctx.tags(), "Name": f"benchctl-{bench}-{role}"}

    vpc_id, subnet_id = _network(ctx, invoke)
    key = ec2.KeyPair("ssh-key", key_name_prefix=f"benchctl-{bench}-", public_key=ctx.ssh_public_key,
                      tags=tags("key"), opts=opts)

    server_sg = ec2.SecurityGroup(
        "server-sg", vpc_id=vpc_id, tags=tags("server"), opts=opts,
        description=f"benchctl {bench} model server: SSH from the operator, engine port from the launcher",
    )
    launcher_sg = ec2.SecurityGroup(
        "launcher-sg", vpc_id=vpc_id, tags=tags("launcher"), opts=opts,
        description=f"benchctl {bench} launcher: SSH from the operator",
    )
    _ssh_from_operator("server-ssh", server_sg, ctx, opts)
    _ssh_from_operator("launcher-ssh", launcher_sg, ctx, opts)
    vpc.SecurityGroupIngressRule(
        "server-engine", security_group_id=server_sg.id, referenced_security_group_id=launcher_sg.id,
        ip_protocol="tcp", from_port=port, to_port=port, description="engine port from the launcher only",
        tags=ctx.tags(), opts=opts,
    )
    _all_egress("server-egress", server_sg, ctx, opts)
    _all_egress("launcher-egress", launcher_sg, ctx, opts)

    guard = cloudinit.Guard()  # the power-off itself terminates the instance (see below)

    def instance(role: str, instance_type: str, ami: pulumi.Input[str], sg: ec2.SecurityGroup,
                 disk_gb: int, spot: bool) -> ec2.Instance:
        market = ec2.InstanceInstanceMarketOptionsArgs(
            market_type="spot",
            spot_options=ec2.InstanceInstanceMarketOptionsSpotOptionsArgs(
                spot_instance_type="one-time", instance_interruption_behavior="terminate"),
        ) if spot else None
        return ec2.Instance(
            role, ami=ami, instance_type=instance_type, key_name=key.key_name, subnet_id=subnet_id,
            vpc_security_group_ids=[sg.id], associate_public_ip_address=True,
            user_data=cloudinit.secret_user_data(ctx, role="server" if role == "gpu" else "launcher",
                                                 ssh_user=SSH_USER, guard=guard),
            user_data_replace_on_change=True,
            root_block_device=ec2.InstanceRootBlockDeviceArgs(
                volume_size=disk_gb, volume_type="gp3", encrypted=True, delete_on_termination=True,
                tags=tags(f"{role}-root")),
            instance_market_options=market,
            instance_initiated_shutdown_behavior="terminate",
            metadata_options=ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
            tags=tags(role), opts=opts,
        )

    gpu = instance("gpu", cfg.instance_type, cfg.gpu_ami or _ami("gpu", cfg.instance_type, invoke),
                   server_sg, sizing.gpu_disk_gb(ctx.cfg), spot=cfg.market == "spot")
    launcher = instance("launcher", cfg.launcher_instance_type,
                        cfg.cpu_ami or _ami("cpu", cfg.launcher_instance_type, invoke),
                        launcher_sg, sizing.LAUNCHER_GB, spot=False)

    export_outputs(
        ctx,
        server=Endpoint(host=gpu.public_ip, port=22, user=SSH_USER),
        launcher=Endpoint(host=launcher.public_ip, port=22, user=SSH_USER),
        engine_url=gpu.private_ip.apply(lambda ip: f"http://{ip}:{port}/v1"),
        gpu_instance_type=cfg.instance_type,
        launcher_instance_type=cfg.launcher_instance_type,
    )
