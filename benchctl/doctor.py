"""`benchctl doctor`: what this machine has for benchctl, read without importing any heavy module."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchctl.config import BenchConfig

EXTRAS = {"aws": "pulumi-aws", "gcp": "pulumi-gcp", "scaleway": "pulumiverse-scaleway"}


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _credentials() -> dict[str, list[str]]:
    """Which credential sources are visible, by name only: never a value."""
    env = os.environ
    home = Path.home()
    aws = [v for v in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_SESSION_TOKEN") if env.get(v)]
    if (home / ".aws" / "credentials").exists():
        aws.append("~/.aws/credentials")
    if (home / ".aws" / "config").exists():
        aws.append("~/.aws/config")
    gcp = [v for v in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT") if env.get(v)]
    if (home / ".config" / "gcloud" / "application_default_credentials.json").exists():
        gcp.append("application-default credentials")
    scw = [v for v in ("SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID") if env.get(v)]
    if (home / ".config" / "scw" / "config.yaml").exists():
        scw.append("~/.config/scw/config.yaml")
    hf = [v for v in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if env.get(v)]
    return {"aws": aws, "gcp": gcp, "scaleway": scw, "huggingface": hf}


def collect(backend: dict[str, Any] | None = None) -> dict[str, Any]:
    from benchctl import __version__, pulumi_cli

    cli = pulumi_cli.find()
    plugin = cli.bin_dir / "pulumi-resource-pulumi-python" if cli else None
    report: dict[str, Any] = {
        "benchctl": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "pulumi": {
            "path": str(cli.path) if cli else None,
            "version": cli.version if cli else None,
            "pinned": pulumi_cli.PINNED_VERSION,
            "ok": bool(cli and cli.version),
            "dynamic_provider_plugin": bool(plugin and plugin.exists()),
            "python_sdk": _dist_version("pulumi"),
        },
        "extras": {name: _dist_version(dist) for name, dist in EXTRAS.items()},
        "credentials": _credentials(),
        "sshd": shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if Path(p).exists()), None),
    }
    if backend is not None:
        report["backend"] = backend
    return report


def backend_report(cfg: BenchConfig, timeout: float = 30.0) -> dict[str, Any]:
    """Which backend and secrets provider `cfg` uses (credentials redacted), and whether they answer.

    Reachability is asked of the Pulumi CLI itself (`pulumi stack ls --all`, bounded by `timeout`), the
    client every later command uses, so an S3 endpoint, path style or profile is read exactly as
    Pulumi reads it. A KMS key is only used (and so only checked) when a secret is encrypted.
    """
    from benchctl import pulumi_cli
    from benchctl.backends import check_reachable, resolve_backend, secrets_status

    backend = resolve_backend(cfg, create=False)
    report: dict[str, Any] = {**backend.describe(), "secrets": secrets_status(backend)}
    cli = pulumi_cli.find()
    if cli is None:
        report.update(reachable=False, stacks=None, error="the Pulumi CLI is not installed: run `make setup`")
    else:
        report.update(check_reachable(backend, cli.path, timeout))
    return report


def render(report: dict[str, Any]) -> str:
    p = report["pulumi"]
    lines = [f"benchctl {report['benchctl']}", f"python    {report['python']['version']} ({report['python']['executable']})"]
    if p["path"]:
        lines.append(f"pulumi    v{p['version']} at {p['path']} (pinned v{p['pinned']})")
    else:
        lines.append(f"pulumi    NOT FOUND: run `make setup` (pinned v{p['pinned']})")
    lines.append(f"          python SDK {p['python_sdk']}; dynamic-provider plugin "
                 f"{'present' if p['dynamic_provider_plugin'] else 'missing'}")
    extras = ", ".join(f"{k} {v}" if v else f"{k} (not installed: pip install 'benchctl[{k}]')"
                       for k, v in report["extras"].items())
    lines.append(f"extras    {extras}")
    for cloud, found in report["credentials"].items():
        lines.append(f"creds     {cloud:<11} {', '.join(found) if found else 'none visible'}")
    lines.append(f"sshd      {report['sshd'] or 'not installed (local provider falls back to a local launcher)'}")
    b = report.get("backend")
    if b:
        state = (f"reachable, {b['stacks']} stack(s)" if b.get("stacks") is not None else "reachable") \
            if b.get("reachable") else f"NOT reachable: {b.get('error')}"
        lines.append(f"backend   {b['url']} ({b['kind']}): {state}")
        lines.append(f"secrets   {b.get('secrets') or b['secrets_provider']}")
    return "\n".join(lines)
