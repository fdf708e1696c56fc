"""Helpers for the stack programs under Pulumi mocks: seed-style configs, a context, one mocked run.

Every run goes through `benchctl.plan.run_under_mocks`, which calls `pulumi.runtime.set_mocks` in
a private thread with its own event loop, so no Pulumi runtime state is shared between tests.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from typing import Any

from benchctl.config import BenchConfig, config_from_dict
from benchctl.keys import KeyPair, generate_ed25519
from benchctl.plan import MockRun, run_under_mocks
from stacks import load_program
from stacks.common import StackContext

# The seed document's examples (docs: cloud-providers.md), verbatim.
SEEDS: dict[str, dict[str, Any]] = {
    "aws": {"region": "us-east-1", "gpu_ami": "ami-072c3e2520d9af5fa", "cpu_ami": "ami-04f3f32777c02a5b3",
            "instance_type": "g4dn.xlarge", "launcher_instance_type": "t3.micro",
            "profile_name": "my-aws-profile"},
    "gcp": {"region": "us-central1", "instance_type": "n1-standard-8-nvidia-tesla-t4",
            "launcher_instance_type": "e2-micro", "access_key": "YOUR_GCP_ACCESS_KEY",
            "secret_key": "YOUR_GCP_SECRET_KEY"},
    "scaleway": {"region": "fr-par", "instance_type": "GPU-3070-S", "launcher_instance_type": "DEV1-S",
                 "access_key": "YOUR_SCALEWAY_ACCESS_KEY", "secret_key": "YOUR_SCALEWAY_SECRET_KEY"},
}
# What `create` needs on top of the seed (the seed has no project ids).
REQUIRED = {"aws": {}, "gcp": {"project": "bench-project"}, "scaleway": {"project_id": "11111111-2222-3333-4444-555555555555"}}

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
HF_TOKEN = "hf_FAKEtokenNEVERinPLAINtext0123456789"
OPERATOR = "198.51.100.7/32"
WORLD = ("0.0.0.0/0", "::/0")


def make_cfg(provider: str, *, engine: dict[str, Any] | None = None, top: dict[str, Any] | None = None,
             **block: Any) -> BenchConfig:
    """The seed's block for `provider` (+ what create needs, + overrides), with a model and a fake HF token."""
    raw = {
        "bench_id": "seed-bench", "provider": provider, "model": MODEL,
        provider: {**SEEDS[provider], **REQUIRED[provider], **block},
        "engine": {"hf_token": HF_TOKEN, **(engine or {})},
        **(top or {}),
    }
    return config_from_dict(raw, apply_env=False)


@functools.cache
def keys() -> tuple[KeyPair, KeyPair]:
    return generate_ed25519("benchctl-seed-bench"), generate_ed25519("benchctl-seed-bench-host")


def make_ctx(cfg: BenchConfig, operator_cidr: str = OPERATOR) -> StackContext:
    user, host = keys()
    created = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
    return StackContext(
        cfg=cfg, stack_name=cfg.bench_id, owner="alice", created_at=created.isoformat(),
        expires_at=(created + cfg.lifetime).isoformat(), ssh_public_key=user.public_line,
        ssh_private_key=user.private_pem, host_key_public=host.public_line, host_key_private=host.private_pem,
        operator_cidr=operator_cidr,
    )


def run(ctx: StackContext) -> MockRun:
    return run_under_mocks(load_program(ctx.cfg.provider), ctx)


def secret_needles(ctx: StackContext) -> list[str]:
    """Values that must never appear outside a secret: private keys (a distinctive line of each) and the token."""
    def line(pem: str) -> str:
        return max(pem.splitlines(), key=len)

    return [line(ctx.ssh_private_key), line(ctx.host_key_private), HF_TOKEN]


def cloud_config(user_data: str) -> dict[str, Any]:
    """The #cloud-config document as data (benchctl writes it as JSON, which is YAML)."""
    header, _, body = user_data.partition("\n")
    assert header == "#cloud-config"
    return json.loads(body)  # type: ignore[no-any-return]
