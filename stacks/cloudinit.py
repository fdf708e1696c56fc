"""cloud-init user data for both instances, the same on every cloud.

What it does at first boot:
- installs the stack's pinned host key (`ssh_keys`) and removes the image's own, so the operator
  verifies the host against `server_host_key_fingerprint` before the first connection;
- authorizes the operator's key for the SSH user;
- installs the lifetime guard: `benchctl-expire.service` runs at every boot, waits until
  `expires_at` (+ a per-cloud grace), runs the cloud's own "delete me" step if it has one, then
  powers off. AWS turns that power-off into termination (`instance_initiated_shutdown_behavior`),
  GCP has already deleted the VM through `max_run_duration`, Scaleway calls its API first;
- on the GPU host: writes the Hugging Face token to /etc/benchctl/hf_token (0600), the engine
  script and its systemd unit, and starts it.

The rendered text carries the host private key and the HF token: `secret_user_data` is the only
way the stacks use it, and it is marked secret so it is encrypted in the Pulumi state.

The document is JSON after the `#cloud-config` line: JSON is YAML, and it needs no YAML library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from stacks import engines

if TYPE_CHECKING:
    import pulumi

    from stacks.common import StackContext

GUARD_SCRIPT = "/usr/local/sbin/benchctl-expire"
GUARD_UNIT = "benchctl-expire.service"
Role = Literal["server", "launcher"]


@dataclass(frozen=True)
class File:
    """A file cloud-init writes; `content` may be a Pulumi Output (resolved before rendering)."""

    path: str
    content: Any
    permissions: str = "0600"


@dataclass(frozen=True)
class Guard:
    """How an instance ends itself: minutes after `expires_at`, and a shell step run before power-off."""

    grace_minutes: int = 0
    before_poweroff: str = ""


def expiry_epoch(ctx: StackContext, grace_minutes: int = 0) -> int:
    when = datetime.fromisoformat(ctx.expires_at.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int((when + timedelta(minutes=grace_minutes)).timestamp())


def guard_script(ctx: StackContext, guard: Guard) -> str:
    """Waits (in one-minute steps, so clock corrections at boot are harmless) and then ends the instance."""
    return (
        "#!/bin/bash\n"
        f"# benchctl lifetime guard: stack {ctx.stack_name} expires at {ctx.expires_at}"
        f" (+{guard.grace_minutes} min grace).\n"
        f"EXPIRY={expiry_epoch(ctx, guard.grace_minutes)}\n"
        'while [ "$(date +%s)" -lt "$EXPIRY" ]; do sleep 60; done\n'
        'logger -t benchctl "lifetime reached: ending this instance"\n'
        + (guard.before_poweroff.rstrip("\n") + "\n" if guard.before_poweroff else "")
        + "systemctl poweroff\n"
    )


GUARD_UNIT_TEXT = (
    "[Unit]\n"
    "Description=benchctl lifetime guard (powers off at the stack's expiry)\n\n"
    "[Service]\n"
    f"ExecStart={GUARD_SCRIPT}\n"
    "Restart=on-failure\n\n"
    "[Install]\n"
    "WantedBy=multi-user.target\n"
)


def render_user_data(ctx: StackContext, *, role: Role, ssh_user: str, guard: Guard,
                     files: tuple[File, ...] = ()) -> str:
    """The #cloud-config document for one instance (plain text: wrap it with `secret_user_data`)."""
    cfg = ctx.cfg
    write = [
        {"path": GUARD_SCRIPT, "content": guard_script(ctx, guard), "permissions": "0755"},
        {"path": f"/etc/systemd/system/{GUARD_UNIT}", "content": GUARD_UNIT_TEXT, "permissions": "0644"},
    ]
    runcmd = ["systemctl daemon-reload", f"systemctl enable --now {GUARD_UNIT}"]
    if role == "server":
        if cfg.engine.hf_token is not None:
            write.append({"path": engines.HF_TOKEN_PATH, "content": cfg.engine.hf_token.get_secret_value(),
                          "permissions": "0600"})
        write += [
            {"path": engines.SCRIPT_PATH, "content": engines.render_engine_script(cfg), "permissions": "0755"},
            {"path": f"/etc/systemd/system/{engines.UNIT_NAME}", "content": engines.render_unit(),
             "permissions": "0644"},
        ]
        runcmd.append(f"systemctl enable --now --no-block {engines.UNIT_NAME}")
    write += [{"path": f.path, "content": f.content, "permissions": f.permissions} for f in files]
    for entry in write:
        entry["owner"] = "root:root"
    doc: dict[str, Any] = {
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {"ed25519_private": ctx.host_key_private, "ed25519_public": ctx.host_key_public},
        "ssh_authorized_keys": [ctx.ssh_public_key],
        "write_files": write,
        "runcmd": runcmd,
    }
    if ssh_user == "root":
        doc["disable_root"] = False   # cloud-init then authorizes the key for root without a "use ubuntu" stub
    return "#cloud-config\n" + json.dumps(doc, indent=1) + "\n"


def secret_user_data(ctx: StackContext, *, role: Role, ssh_user: str, guard: Guard,
                     files: tuple[File, ...] = ()) -> pulumi.Output[str]:
    """`render_user_data` as a secret Output (files may hold Outputs, such as an API key)."""
    import pulumi

    def render(contents: list[Any]) -> str:
        resolved = tuple(File(f.path, c, f.permissions) for f, c in zip(files, contents, strict=True))
        return render_user_data(ctx, role=role, ssh_user=ssh_user, guard=guard, files=resolved)

    return pulumi.Output.secret(pulumi.Output.all(*[f.content for f in files]).apply(render))
