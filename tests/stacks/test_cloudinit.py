"""cloud-init user data: pinned host key, operator key, engine on the server only, and the lifetime guard."""

from __future__ import annotations

import contextlib
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from stackhelp import HF_TOKEN, cloud_config, make_cfg, make_ctx

from stacks import cloudinit, engines

AWS_USER_DATA_LIMIT = 16 * 1024


def files_of(doc: dict) -> dict[str, dict]:
    return {f["path"]: f for f in doc["write_files"]}


def test_server_user_data():
    ctx = make_ctx(make_cfg("aws"))
    doc = cloud_config(cloudinit.render_user_data(ctx, role="server", ssh_user="ubuntu", guard=cloudinit.Guard()))
    assert doc["ssh_keys"] == {"ed25519_private": ctx.host_key_private, "ed25519_public": ctx.host_key_public}
    assert doc["ssh_deletekeys"] is True and doc["ssh_genkeytypes"] == []   # only the pinned key is offered
    assert doc["ssh_authorized_keys"] == [ctx.ssh_public_key] and "disable_root" not in doc
    files = files_of(doc)
    assert files[engines.HF_TOKEN_PATH] == {"path": engines.HF_TOKEN_PATH, "content": HF_TOKEN,
                                            "permissions": "0600", "owner": "root:root"}
    assert files[engines.SCRIPT_PATH]["content"] == engines.render_engine_script(ctx.cfg)
    assert files[engines.SCRIPT_PATH]["permissions"] == "0755"
    assert f"/etc/systemd/system/{engines.UNIT_NAME}" in files
    assert f"systemctl enable --now --no-block {engines.UNIT_NAME}" in doc["runcmd"]
    assert f"systemctl enable --now {cloudinit.GUARD_UNIT}" in doc["runcmd"]


def test_launcher_user_data_has_no_engine_and_no_token():
    ctx = make_ctx(make_cfg("aws"))
    text = cloudinit.render_user_data(ctx, role="launcher", ssh_user="root", guard=cloudinit.Guard())
    doc = cloud_config(text)
    assert HF_TOKEN not in text and engines.SCRIPT_PATH not in files_of(doc)
    assert not [c for c in doc["runcmd"] if engines.UNIT_NAME in c]
    assert doc["disable_root"] is False and cloudinit.GUARD_SCRIPT in files_of(doc)


def test_no_hf_token_no_token_file():
    cfg = make_cfg("aws").model_copy(update={"engine": make_cfg("aws").engine.model_copy(update={"hf_token": None})})
    doc = cloud_config(cloudinit.render_user_data(make_ctx(cfg), role="server", ssh_user="ubuntu",
                                                  guard=cloudinit.Guard()))
    assert engines.HF_TOKEN_PATH not in files_of(doc)


def test_user_data_fits_the_aws_limit():
    cfg = make_cfg("aws", engine={"args": ["--max-model-len", "32768"] * 20})
    text = cloudinit.render_user_data(make_ctx(cfg), role="server", ssh_user="ubuntu", guard=cloudinit.Guard())
    assert len(text.encode()) < AWS_USER_DATA_LIMIT


def test_guard_expiry_includes_the_grace():
    ctx = make_ctx(make_cfg("gcp"))
    expires = int(datetime.fromisoformat(ctx.expires_at).timestamp())
    script = cloudinit.guard_script(ctx, cloudinit.Guard(grace_minutes=15))
    assert f"EXPIRY={expires + 15 * 60}\n" in script


def _run_guard(ctx, guard: cloudinit.Guard, tmp_path, timeout: float) -> list[str]:
    """Run the guard script with stub systemctl/logger; return what systemctl was asked to do."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for name in ("systemctl", "logger"):
        (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> "{log}"\n')
        (bin_dir / name).chmod(0o755)
    script = cloudinit.guard_script(ctx, guard)
    with contextlib.suppress(subprocess.TimeoutExpired):  # still waiting for the expiry
        subprocess.run(["bash", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=timeout,
                       capture_output=True)
    return log.read_text().splitlines() if log.exists() else []


def _ctx_expiring(at: datetime):
    ctx = make_ctx(make_cfg("aws"))
    return type(ctx)(**{**ctx.__dict__, "expires_at": at.isoformat()})


def test_guard_powers_off_after_expiry_running_the_cloud_step_first(tmp_path):
    ctx = _ctx_expiring(datetime.now(timezone.utc) - timedelta(minutes=1))
    calls = _run_guard(ctx, cloudinit.Guard(before_poweroff="logger cloud-step"), tmp_path, timeout=10)
    assert calls == ["logger -t benchctl lifetime reached: ending this instance", "logger cloud-step",
                     "systemctl poweroff"]


def test_guard_waits_before_expiry(tmp_path):
    ctx = _ctx_expiring(datetime.now(timezone.utc) + timedelta(hours=1))
    assert _run_guard(ctx, cloudinit.Guard(), tmp_path, timeout=1.5) == []


@pytest.mark.parametrize("role", ["server", "launcher"])
def test_guard_unit_and_script_are_installed(role):
    ctx = make_ctx(make_cfg("aws"))
    doc = cloud_config(cloudinit.render_user_data(ctx, role=role, ssh_user="ubuntu", guard=cloudinit.Guard()))
    files = files_of(doc)
    assert files[cloudinit.GUARD_SCRIPT]["permissions"] == "0755"
    assert f"ExecStart={cloudinit.GUARD_SCRIPT}" in files[f"/etc/systemd/system/{cloudinit.GUARD_UNIT}"]["content"]
    assert subprocess.run(["bash", "-n"], input=files[cloudinit.GUARD_SCRIPT]["content"], text=True).returncode == 0
