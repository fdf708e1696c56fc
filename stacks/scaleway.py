"""Scaleway: a GPU model server and a CPU launcher on Scaleway Instances, reachable only from the operator.

Created (tagged "key=value" from `ctx.tags()`, through one explicit provider):
- the operator's SSH key in the project (`iam.SshKey`; Scaleway authorizes every project key on
  new instances, and cloud-init authorizes it too);
- a routed flexible IPv4 per instance; the instances have no private address (no private network),
  so the engine listens on the GPU host's flexible IP and its security group lets only the
  launcher's flexible IP reach the engine port;
- two security groups that drop every inbound packet except SSH from `ctx.operator_cidr` (and, on
  the server, the engine port from the launcher);
- the lifetime guard's credentials: an IAM application with `InstancesFullAccess` on this project
  only, and an API key for it that expires an hour after the stack does. At expiry each instance
  asks the Instance API to `terminate` itself (server and local volumes). A power-off from inside the
  OS would not do: Scaleway keeps a halted instance allocated, and it keeps billing;
- the two instances, GPU host on the GPU OS image (`[scaleway].image`, default below: Ubuntu
  22.04 with the NVIDIA driver, Docker and the container toolkit), launcher on
  `[scaleway].launcher_image`. List other labels with
  `scw marketplace image list` or `scw instance image list zone=fr-par-2`.

Left behind by a self-terminated instance: its flexible IP, security group and IAM objects (cheap or
free, but billed in the IP's case): `benchctl destroy --expired` removes them.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone

import pulumi

from benchctl.errors import ConfigError
from stacks import cloudinit, engines, sizing
from stacks.common import Endpoint, StackContext, export_outputs

with warnings.catch_warnings():
    # The package re-exports ~300 deprecated flat names (InstanceServer, ...) that warn when imported.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumiverse_scaleway as scaleway
    from pulumiverse_scaleway import account, iam, instance

    _LOADED = (account.get_project_output, iam.ApiKey, instance.Server)  # loaded on first use: load them here

GPU_IMAGE = "ubuntu_jammy_gpu_os_12"
SSH_USER = "root"
API_URL = "https://api.scaleway.com"
AUTH_HEADER_PATH = "/etc/benchctl/scw_auth_header"
METADATA_URL = "http://169.254.42.42/conf?format=json"


def self_terminate_step(zone: str) -> str:
    """Shell run by the guard before power-off: terminate this server through the Instance API.

    The metadata API answers only requests from a privileged source port; the token is read by
    curl from a root-only header file, so it never appears in a process list.
    """
    action = f"{API_URL}/instance/v1/zones/{zone}/servers/$SERVER_ID/action"
    return (
        f"SERVER_ID=\"$(curl -sf --local-port 1-1023 '{METADATA_URL}' "
        "| python3 -c 'import json, sys; print(json.load(sys.stdin)[\"id\"])')\" || SERVER_ID=\"\"\n"
        'if [ -n "$SERVER_ID" ]; then\n'
        f"  curl -sf -X POST -H @{AUTH_HEADER_PATH} -H 'Content-Type: application/json' "
        f"-d '{{\"action\": \"terminate\"}}' \"{action}\" && sleep 300\n"
        "fi\n"
    )


def _key_expiry(ctx: StackContext) -> str:
    when = datetime.fromisoformat(ctx.expires_at.replace("Z", "+00:00")).astimezone(timezone.utc)
    return (when + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def program(ctx: StackContext) -> None:
    """Create the Scaleway stack for `ctx` and export the outputs contract."""
    cfg = ctx.cfg.scaleway
    if cfg is None:
        raise ConfigError("provider = 'scaleway' needs a [scaleway] section")
    engines.engine_spec(ctx.cfg)  # refuses engines a cloud host cannot run, before anything is created
    if not cfg.project_id:
        raise ConfigError("[scaleway].project_id is required (or set SCW_DEFAULT_PROJECT_ID)")
    if cfg.market == "spot":
        raise ConfigError("[scaleway].market: Scaleway Instances have no spot market; use \"on-demand\"")
    bench, port, zone, project = ctx.cfg.bench_id, ctx.cfg.engine_port, cfg.effective_zone(), cfg.project_id
    provider = scaleway.Provider(
        "scaleway", region=cfg.region, zone=zone, project_id=project,
        access_key=pulumi.Output.secret(cfg.access_key.get_secret_value()) if cfg.access_key else None,
        secret_key=pulumi.Output.secret(cfg.secret_key.get_secret_value()) if cfg.secret_key else None,
    )
    opts = pulumi.ResourceOptions(provider=provider)
    tags = [f"{k}={v}" for k, v in ctx.tags().items()]

    ssh_key = iam.SshKey("ssh-key", name=f"benchctl-{bench}", public_key=ctx.ssh_public_key,
                         project_id=project, opts=opts)
    gpu_ip = instance.Ip("gpu-ip", type="routed_ipv4", zone=zone, project_id=project, tags=tags, opts=opts)
    launcher_ip = instance.Ip("launcher-ip", type="routed_ipv4", zone=zone, project_id=project, tags=tags,
                              opts=opts)

    ssh_rule = instance.SecurityGroupInboundRuleArgs(action="accept", protocol="TCP", port=22,
                                                    ip_range=ctx.operator_cidr)

    def security_group(name: str, rules: list[instance.SecurityGroupInboundRuleArgs]) -> instance.SecurityGroup:
        return instance.SecurityGroup(
            name, name=f"benchctl-{bench}-{name}", description=f"benchctl {bench}", zone=zone,
            project_id=project, inbound_default_policy="drop", outbound_default_policy="accept",
            stateful=True, inbound_rules=rules, tags=tags, opts=opts,
        )

    launcher_sg = security_group("launcher-sg", [ssh_rule])
    server_sg = security_group("server-sg", [ssh_rule, instance.SecurityGroupInboundRuleArgs(
        action="accept", protocol="TCP", port=port, ip_range=launcher_ip.address.apply(lambda a: f"{a}/32"))])

    # The guard's API key: Instances only, this project only, expiring soon after the stack.
    org = account.get_project_output(project_id=project, opts=pulumi.InvokeOutputOptions(provider=provider))
    app = iam.Application("guard-app", name=f"benchctl-{bench}-guard", organization_id=org.organization_id,
                          description=f"benchctl {bench}: lets its instances delete themselves at expiry",
                          tags=tags, opts=opts)
    iam.Policy("guard-policy", name=f"benchctl-{bench}-guard", application_id=app.id,
               organization_id=org.organization_id, tags=tags, opts=opts,
               rules=[iam.PolicyRuleArgs(project_ids=[project], permission_set_names=["InstancesFullAccess"])])
    api_key = iam.ApiKey("guard-key", application_id=app.id, default_project_id=project,
                         expires_at=_key_expiry(ctx), description=f"benchctl {bench} lifetime guard", opts=opts)
    auth_header = cloudinit.File(AUTH_HEADER_PATH, api_key.secret_key.apply(lambda s: f"X-Auth-Token: {s}\n"))
    guard = cloudinit.Guard(before_poweroff=self_terminate_step(zone))

    def server(role: str, server_type: str, image: str, ip: instance.Ip, sg: instance.SecurityGroup,
               root: instance.ServerRootVolumeArgs | None) -> instance.Server:
        user_data = cloudinit.secret_user_data(
            ctx, role="server" if role == "gpu" else "launcher", ssh_user=SSH_USER, guard=guard,
            files=(auth_header,))
        return instance.Server(
            role, name=f"benchctl-{bench}-{role}", type=server_type, image=image, zone=zone,
            project_id=project, ip_id=ip.id, security_group_id=sg.id, root_volume=root,
            user_data={"cloud-init": user_data}, tags=tags,
            opts=pulumi.ResourceOptions(provider=provider, depends_on=[ssh_key]),
        )

    server("gpu", cfg.instance_type, cfg.image or GPU_IMAGE, gpu_ip, server_sg,
                 instance.ServerRootVolumeArgs(size_in_gb=sizing.gpu_disk_gb(ctx.cfg), delete_on_termination=True))
    # The launcher keeps its type's default root volume (DEV1-S: 20 GB local).
    server("launcher", cfg.launcher_instance_type, cfg.launcher_image, launcher_ip, launcher_sg, None)

    export_outputs(
        ctx,
        server=Endpoint(host=gpu_ip.address, port=22, user=SSH_USER),
        launcher=Endpoint(host=launcher_ip.address, port=22, user=SSH_USER),
        engine_url=gpu_ip.address.apply(lambda ip: f"http://{ip}:{port}/v1"),
        gpu_instance_type=cfg.instance_type,
        launcher_instance_type=cfg.launcher_instance_type,
    )
