"""The offline plan: run the real stack program under Pulumi mocks and show what it would create.

No credentials, no network, no Pulumi CLI: the program is the same function `up` runs, but every
resource registration and every lookup (AMI, image, VPC, ...) is answered by `RecordingMocks`.
Lookups answer with descriptions of what the real lookup would choose ("<newest AMI named ...>"),
so the plan is honest about what is decided only at `create` time.

The mocked run happens in its own thread with its own event loop: Pulumi's runtime settings are
context variables, so the caller's thread (and a later real `up` in the same process) never sees
the mocked settings, and `offline_plan` can be called any number of times in one process.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi.runtime import rpc

from benchctl import pricing

if TYPE_CHECKING:
    from collections.abc import Callable

    from benchctl.config import BenchConfig
    from stacks.common import StackContext

SECRET = "[secret]"
PLACEHOLDER_CIDR = "<your-ip>/32"


@dataclass(frozen=True)
class Recorded:
    """One resource registration: inputs as the engine would receive them (wire names, secrets wrapped)."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str

    def plain(self) -> dict[str, Any]:
        """Inputs with secret markers removed (the values a provider would see)."""
        return unwrap(self.inputs)

    def masked(self) -> dict[str, Any]:
        """Inputs with every secret replaced by "[secret]"."""
        return mask(self.inputs)


@dataclass
class MockRun:
    resources: list[Recorded] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, suffix: str) -> list[Recorded]:
        return [r for r in self.resources if r.type.endswith(suffix)]

    def named(self, name: str) -> Recorded:
        return next(r for r in self.resources if r.name == name)


def unwrap(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return _number(value)


def mask(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return _number(value)


def _number(value: Any) -> Any:
    """Protobuf carries every number as a float: give whole numbers back as ints (ports, sizes)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource; answers lookups with placeholders and instances with documentation IPs."""

    def __init__(self) -> None:
        self.resources: list[Recorded] = []
        self.calls: list[tuple[str, dict[str, Any], str]] = []   # (token, args, provider)
        self._hosts = 0

    def _host(self, prefix: str) -> str:
        self._hosts += 1
        return f"{prefix}.{self._hosts}"

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs), args.provider or ""))
        state = unwrap(dict(args.inputs))
        if args.typ == "aws:ec2/instance:Instance":
            state.update(publicIp=self._host("203.0.113"), privateIp=self._host("10.0.0"))
        elif args.typ == "aws:ec2/keyPair:KeyPair":
            state["keyName"] = f"{state.get('keyNamePrefix', '')}mock"
        elif args.typ == "gcp:compute/instance:Instance":
            for nic in state.get("networkInterfaces", []):
                nic["networkIp"] = self._host("10.128.0")
                for access in nic.get("accessConfigs", []):
                    access["natIp"] = self._host("203.0.113")
        elif args.typ == "scaleway:instance/ip:Ip":
            state["address"] = self._host("198.51.100")
        elif args.typ == "scaleway:iam/apiKey:ApiKey":
            state.update(accessKey="SCWMOCKACCESSKEY", secretKey="00000000-0000-0000-0000-000000000000")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        a = unwrap(dict(args.args))
        self.calls.append((args.token, a, args.provider or ""))
        filters = {f["name"]: f["values"] for f in a.get("filters", [])}
        token = args.token
        if token == "aws:ec2/getAmi:getAmi":
            name = filters.get("name", ["?"])[0]
            return {"id": f"<newest AMI named '{name}' owned by {','.join(a.get('owners', []))}>"}
        if token == "aws:ec2/getVpc:getVpc":
            return {"id": "<default VPC>"}
        if token == "aws:ec2/getSubnet:getSubnet":
            return {"id": a.get("id"), "vpcId": f"<VPC of {a.get('id')}>"}
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            types = filters.get("instance-type", [])
            return {"instanceTypes": types, "locations": ["<a zone offering both types>"] * len(types)}
        if token == "aws:ec2/getSubnets:getSubnets":
            zone = filters.get("availability-zone", ["?"])[0]
            return {"ids": [f"<default subnet in {zone}>"]}
        if token == "gcp:compute/getImage:getImage":
            return {"selfLink": f"<latest image of family {a.get('family')} in project {a.get('project')}>"}
        if token == "scaleway:account/getProject:getProject":
            return {"id": a.get("projectId"), "organizationId": f"<organization of project {a.get('projectId')}>"}
        return {}


def run_under_mocks(program: Callable[[StackContext], None], ctx: StackContext) -> MockRun:
    """Run `program(ctx)` against `RecordingMocks` in a private thread; raise what the program raised."""
    box: dict[str, Any] = {}

    def target() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            box["run"] = _run(program, ctx)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="benchctl-offline-plan", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["run"]  # type: ignore[no-any-return]


def _run(program: Callable[[StackContext], None], ctx: StackContext) -> MockRun:
    from pulumi.runtime.settings import get_root_resource
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from stacks.common import PROJECT

    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=ctx.stack_name, preview=False)
    result = MockRun()

    async def collect() -> None:
        root = get_root_resource()
        for key, value in getattr(root, "outputs", {}).items():
            out = pulumi.Output.from_input(value)
            result.outputs[key] = await out.future()
            if await out.is_secret():
                result.secret_outputs.add(key)

    def body() -> Any:
        program(ctx)
        return collect()

    _sync_await(run_pulumi_func(body))
    result.resources, result.calls = list(mocks.resources), list(mocks.calls)
    return result


# ------------------------------------------------------------------------------------------ plan


def _plannable(cfg: BenchConfig) -> tuple[BenchConfig, list[str]]:
    """Fill what only `create` needs (project ids, a readable credentials file) with placeholders."""
    notes: list[str] = []
    cloud = cfg.cloud
    update: dict[str, Any] = {}
    if cfg.provider == "gcp" and cfg.gcp is not None:
        if not cfg.gcp.project:
            update["project"] = "<your-project>"
            notes.append("[gcp].project is not set: shown as <your-project>; `create` needs it")
        if cfg.gcp.credentials_file and not Path(cfg.gcp.credentials_file).expanduser().is_file():
            update["credentials_file"] = None
            notes.append(f"[gcp].credentials_file {cfg.gcp.credentials_file} is not readable here: planned without it")
    if cfg.provider == "scaleway" and cfg.scaleway is not None and not cfg.scaleway.project_id:
        update["project_id"] = "<your-project-id>"
        notes.append("[scaleway].project_id is not set: shown as <your-project-id>; `create` needs it")
    if cloud is not None and update:
        cfg = cfg.model_copy(update={cfg.provider: cloud.model_copy(update=update)})
    return cfg, notes


def _context(cfg: BenchConfig) -> StackContext:
    from benchctl.keys import generate_ed25519
    from stacks.common import StackContext

    created = datetime.now(timezone.utc).replace(microsecond=0)
    user, host = generate_ed25519(f"benchctl-{cfg.bench_id}"), generate_ed25519(f"benchctl-{cfg.bench_id}-host")
    cloud = cfg.cloud
    return StackContext(
        cfg=cfg, stack_name=cfg.bench_id, owner=cfg.resolved_owner(), created_at=created.isoformat(),
        expires_at=(created + cfg.lifetime).isoformat(), ssh_public_key=user.public_line,
        ssh_private_key=user.private_pem, host_key_public=host.public_line, host_key_private=host.private_pem,
        operator_cidr="127.0.0.1/32" if cloud is None else (cloud.ssh_cidr or PLACEHOLDER_CIDR),
    )


def _instance_costs(resources: list[Recorded]) -> tuple[list[tuple[str, float | None]], list[str]]:
    """(instance description, USD/hour or None) for every instance the program would create."""
    items: list[tuple[str, float | None]] = []
    for r in resources:
        inputs = r.plain()
        if r.type == "aws:ec2/instance:Instance":
            items.append((inputs["instanceType"], pricing.instance_hourly_usd("aws", inputs["instanceType"])))
        elif r.type == "scaleway:instance/server:Server":
            items.append((inputs["type"], pricing.instance_hourly_usd("scaleway", inputs["type"])))
        elif r.type == "gcp:compute/instance:Instance":
            machine = inputs["machineType"]
            price = pricing.instance_hourly_usd("gcp", machine)
            label = machine
            for acc in inputs.get("guestAccelerators") or []:
                label += f" + {acc['count']} x {acc['type']}"
                gpu = pricing.accelerator_hourly_usd(acc["type"])
                price = None if price is None or gpu is None else price + gpu * acc["count"]
            items.append((label, price))
    notes = [f"{label}: not in the price table, so no total" for label, price in items if price is None]
    return items, notes


def offline_plan(cfg: BenchConfig) -> dict[str, Any]:
    """What `create` would make for `cfg`, and its estimated hourly cost, with no credentials at all.

    Returns {"provider", "bench_id", "resources": [{"type", "name", "inputs"}], "instances":
    [{"type", "hourly_usd"}], "estimated_hourly_cost_usd", "max_lifetime", "max_lifetime_cost_usd",
    "price_table_date", "notes"}. Inputs use Pulumi's wire names (camelCase); secret inputs show as
    "[secret]". The cost is None when an instance type is not in the price table.
    """
    from stacks import load_program

    planned, notes = _plannable(cfg)
    ctx = _context(planned)
    run = run_under_mocks(load_program(cfg.provider), ctx)
    # Registration order depends on async timing: show a stable one (providers first).
    resources = sorted(run.resources, key=lambda r: (not r.type.startswith("pulumi:providers:"), r.type, r.name))
    costs, cost_notes = _instance_costs(resources)
    prices = [price for _, price in costs]
    total = None if None in prices else round(sum(p for p in prices if p is not None), 4)
    cloud = cfg.cloud
    if ctx.operator_cidr == PLACEHOLDER_CIDR:
        notes.append(f"SSH is shown open to {PLACEHOLDER_CIDR}: `create` detects this machine's public "
                     "address (or set ssh_cidr)")
    notes += cost_notes
    if cloud is not None:
        notes.append("keys, AMI/image ids and addresses are placeholders; lookups run at `create`")
        ref = pricing.REFERENCE_REGION.get(cfg.provider)
        notes.append(f"prices: on-demand list prices in {ref} as of {pricing.PRICE_TABLE_DATE}, compute only "
                     "(no disks, IPs, egress or taxes); approximate, check the provider's pricing page")
        if ref and not cloud.region.startswith(ref):
            notes.append(f"region {cloud.region} may be priced differently from {ref}")
        if cloud.market == "spot":
            notes.append("market = spot: estimated at the on-demand price (an upper bound)")
    return {
        "provider": cfg.provider,
        "bench_id": cfg.bench_id,
        "resources": [{"type": r.type, "name": r.name, "inputs": r.masked()} for r in resources],
        "instances": [{"type": label, "hourly_usd": price} for label, price in costs],
        "estimated_hourly_cost_usd": total,
        "max_lifetime": cfg.max_lifetime,
        "max_lifetime_cost_usd": None if total is None else round(total * cfg.lifetime.total_seconds() / 3600, 2),
        "price_table_date": pricing.PRICE_TABLE_DATE,
        "notes": notes,
    }


# Inputs worth a glance in the text view; `--json` has them all.
KEY_INPUTS = (
    "instanceType", "machineType", "type", "ami", "image", "region", "zone", "project", "projectId", "profile",
    "accessKey", "secretKey", "credentials", "cidrIpv4", "cidrIpv6", "referencedSecurityGroupId",
    "ipProtocol", "fromPort", "toPort", "sourceRanges", "sourceTags", "targetTags", "allows", "denies", "priority",
    "inboundDefaultPolicy", "inboundRules", "guestAccelerators", "scheduling", "instanceMarketOptions",
    "instanceInitiatedShutdownBehavior", "userData", "expiresAt", "rules",
)


def _compact(value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= 140 else text[:137] + "..."


def render_plan(plan: dict[str, Any]) -> str:
    """The plan as text: one block per resource with its key inputs, then the cost and the notes."""
    lines = [f"Plan for bench {plan['bench_id']} on {plan['provider']} (offline: nothing is created, "
             "no credentials are used)", ""]
    for res in plan["resources"]:
        lines.append(f"+ {res['type']}  {res['name']}")
        for key in KEY_INPUTS:
            if res["inputs"].get(key) not in (None, [], {}):
                lines.append(f"      {key} = {_compact(res['inputs'][key])}")
    lines.append("")
    for inst in plan.get("instances", []):
        price = "unknown" if inst["hourly_usd"] is None else f"${inst['hourly_usd']:.4f}/h"
        lines.append(f"  {inst['type']}: {price}")
    cost = plan["estimated_hourly_cost_usd"]
    if cost is None:
        lines.append(f"Estimated cost: unknown (price table of {plan['price_table_date']})")
    else:
        lines.append(f"Estimated cost: ${cost:.4f} per hour, at most ${plan['max_lifetime_cost_usd']:.2f} "
                     f"over max_lifetime = {plan['max_lifetime']} (price table of {plan['price_table_date']})")
    lines += [f"  note: {n}" for n in plan["notes"]]
    return "\n".join(lines)

