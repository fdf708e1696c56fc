"""What every stack program shares: the context it is given and the outputs it must export.

The contract between the stacks and everything after `up` (connection, deploy, benchmark, results,
`ls`) is `export_outputs`: whatever the cloud, the same output names with the same meaning. Nothing
after `up` knows which cloud it is on.

A stack program is a plain function `program(ctx: StackContext) -> None`, handed to the Automation
API as an inline program (the driver wraps it in a closure). It must create resources only when called.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from benchctl.config import BenchConfig

PROJECT = "benchctl"

# Output names. Hosts/ports are what the operator's machine uses to reach each instance over SSH;
# `engine_url` is the model server's OpenAI base URL as seen *from the launcher* (a private address).
OUTPUT_KEYS = (
    "status", "bench_id", "provider", "engine", "model", "owner", "created_at", "expires_at",
    "gpu_instance_type", "launcher_instance_type", "engine_url",
    "server_host", "server_ssh_port", "server_ssh_user", "server_host_key", "server_host_key_fingerprint",
    "launcher_host", "launcher_ssh_port", "launcher_ssh_user", "launcher_host_key",
    "launcher_host_key_fingerprint", "launcher_workdir", "ssh_private_key", "host_key_private", "results",
)


@dataclass(frozen=True)
class StackContext:
    """Everything a stack program needs, computed by the driver before the program runs.

    Keys are generated once per stack by the driver and kept in the stack's own outputs as secrets
    (so every `up`, by anyone sharing the backend, sees the same ones). `ssh_private_key` and `host_key_private` are plain strings here:
    programs must wrap them with `pulumi.Output.secret` before they reach any resource or output.
    """

    cfg: BenchConfig
    stack_name: str
    owner: str
    created_at: str                 # ISO 8601, UTC
    expires_at: str                 # ISO 8601, UTC: every resource carries it and dies by it
    ssh_public_key: str             # operator key ("ssh-ed25519 AAAA… benchctl-<stack>"), authorized everywhere
    ssh_private_key: str            # OpenSSH PEM; secret
    host_key_public: str            # host key the instances present ("ssh-ed25519 AAAA…"), pinned by the operator
    host_key_private: str           # OpenSSH PEM; secret; installed on the instances (cloud-init ssh_keys)
    operator_cidr: str = "127.0.0.1/32"   # who may reach SSH (detected public IP /32 or [cloud].ssh_cidr)
    results: dict[str, Any] | None = None  # headline results recorded after a benchmark
    state_dir: str = ""             # local provider: where its processes keep their files

    @property
    def lifetime_seconds(self) -> int:
        return int(self.cfg.lifetime.total_seconds())

    def tags(self) -> dict[str, str]:
        """Tags for every cloud resource (AWS/Scaleway style keys; GCP labels use `labels()`)."""
        return {
            "benchctl:bench_id": self.cfg.bench_id,
            "benchctl:stack": self.stack_name,
            "benchctl:expires_at": self.expires_at,
            "benchctl:owner": self.owner,
        }

    def labels(self) -> dict[str, str]:
        """GCP labels: lowercase letters, digits, '_' and '-' only, so the expiry is a compact timestamp."""

        def clean(v: str) -> str:
            return "".join(c if c.isalnum() or c in "-_" else "-" for c in v.lower())[:63]

        return {
            "benchctl-bench-id": clean(self.cfg.bench_id),
            "benchctl-stack": clean(self.stack_name),
            "benchctl-expires-at": clean(self.expires_at.replace("+00:00", "z").replace(":", "")),
            "benchctl-owner": clean(self.owner),
        }


def fingerprint(public_key_line: str) -> str:
    """OpenSSH SHA256 fingerprint ("SHA256:…") of a public key line such as "ssh-ed25519 AAAA… comment"."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class Endpoint:
    """How the operator reaches one instance over SSH. Values may be Pulumi Outputs."""

    host: Any
    port: Any = 22
    user: Any = "ubuntu"


def export_outputs(ctx: StackContext, *, server: Endpoint, launcher: Endpoint, engine_url: Any,
                   gpu_instance_type: str, launcher_instance_type: str,
                   launcher_workdir: str = ".benchctl") -> None:
    """Export the outputs contract. Call exactly once at the end of every stack program.

    `launcher_workdir` is where benchctl keeps its files on the launcher (relative to the SSH user's
    home, or absolute): the runner, the specs and the results of each run.
    """
    import pulumi

    cfg = ctx.cfg
    plain = {
        "status": "running",  # the tombstone left by `destroy` says "destroyed"
        "bench_id": cfg.bench_id,
        "provider": cfg.provider,
        "engine": cfg.engine_name,
        "model": cfg.model_name,
        "owner": ctx.owner,
        "created_at": ctx.created_at,
        "expires_at": ctx.expires_at,
        "gpu_instance_type": gpu_instance_type,
        "launcher_instance_type": launcher_instance_type,
        "engine_url": engine_url,
        "server_host": server.host,
        "server_ssh_port": server.port,
        "server_ssh_user": server.user,
        "server_host_key": ctx.host_key_public,
        "server_host_key_fingerprint": fingerprint(ctx.host_key_public),
        "launcher_host": launcher.host,
        "launcher_ssh_port": launcher.port,
        "launcher_ssh_user": launcher.user,
        "launcher_host_key": ctx.host_key_public,
        "launcher_host_key_fingerprint": fingerprint(ctx.host_key_public),
        "launcher_workdir": launcher_workdir,
        "results": json.loads(json.dumps(ctx.results)) if ctx.results else None,
    }
    for key, value in plain.items():
        pulumi.export(key, value)
    # A teammate who reads this stack needs the key to reach the launcher; it stays encrypted in state.
    pulumi.export("ssh_private_key", pulumi.Output.secret(ctx.ssh_private_key))
    # Kept so that a later `up` re-renders the same user data (a new host key would replace instances).
    pulumi.export("host_key_private", pulumi.Output.secret(ctx.host_key_private))
