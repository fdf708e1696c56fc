"""The Pulumi driver: backend, stack naming, config, up/preview/refresh/destroy, outputs.

One Pulumi project (`benchctl`), one stack per `bench_id`, an inline program chosen by `provider`.
Anyone who knows Pulumi can look at the same stack with the plain CLI (see docs/state.md):

    PULUMI_BACKEND_URL=file://$PWD/.benchctl/state pulumi stack output -s organization/benchctl/<bench_id>

Facts a stack must keep between runs (its SSH keys, creation time, expiry, owner, last results) live
in its own outputs, as secrets where they are secret, so they travel with the state to whoever
shares the backend. Secrets are also set as stack config with `secret=True`.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchctl.errors import ConfigError, ProvisionError, StackLockedError

if TYPE_CHECKING:
    from pulumi import automation as auto

    from benchctl.config import BenchConfig
    from stacks.common import StackContext

PROJECT = "benchctl"
STATE_DIR = ".benchctl"


@dataclass(frozen=True)
class Backend:
    url: str
    kind: str                 # file, s3, gs, azblob, cloud
    secrets_provider: str     # "passphrase" or a KMS URL
    env: dict[str, str]       # what the Pulumi CLI needs to reach it

    def describe(self) -> dict[str, str]:
        return {"url": _redact_url(self.url), "kind": self.kind, "secrets_provider": self.secrets_provider}


def _redact_url(url: str) -> str:
    return re.sub(r"//[^/@]+:[^/@]+@", "//***:***@", url)


BACKEND_SCHEMES = {"file": "file", "s3": "s3", "gs": "gs", "azblob": "azblob", "https": "cloud", "http": "cloud"}
SECRETS_SCHEMES = ("awskms://", "gcpkms://", "azurekeyvault://", "hashivault://")


def resolve_backend(cfg: BenchConfig) -> Backend:
    """The state backend and secrets provider for this config, with the environment the CLI needs.

    Default: a file backend under the project directory, `.benchctl/state`, and a passphrase kept in
    `.benchctl/passphrase` (0600) unless PULUMI_CONFIG_PASSPHRASE(_FILE) is set.
    """
    home = cfg.project_dir / STATE_DIR
    url = cfg.backend_url or os.environ.get("PULUMI_BACKEND_URL") or f"file://{home / 'state'}"
    scheme = url.split("://", 1)[0] if "://" in url else ""
    kind = BACKEND_SCHEMES.get(scheme)
    if kind is None:
        raise ConfigError(
            f"{cfg.source or 'config'}: backend_url: expected file://, s3://, gs://, azblob:// or "
            f"https://api.pulumi.com, got {_redact_url(url)!r}"
        )
    env = {"PULUMI_BACKEND_URL": url}
    if kind == "file":
        path = Path(url[len("file://"):]).expanduser()
        if url.startswith("file://~"):
            url = f"file://{path}"
            env["PULUMI_BACKEND_URL"] = url
        path.mkdir(parents=True, exist_ok=True)
    provider = cfg.secrets_provider or "passphrase"
    if provider != "passphrase" and not provider.startswith(SECRETS_SCHEMES):
        raise ConfigError(
            f"{cfg.source or 'config'}: secrets_provider: expected 'passphrase' or a URL starting with "
            f"{', '.join(SECRETS_SCHEMES)}, got {provider!r}"
        )
    if provider == "passphrase" and kind != "cloud" and not (
        os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    ):
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(_passphrase_file(home))
    return Backend(url=url, kind=kind, secrets_provider=provider, env=env)


def _passphrase_file(home: Path) -> Path:
    """A generated passphrase in a 0600 file, created once per project directory."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "passphrase"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path


def stack_name(cfg: BenchConfig) -> str:
    return cfg.bench_id


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _public_line(private_pem: str, comment: str) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(private_pem.encode(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{public.decode()} {comment}"


EventSink = Callable[[Any], None]


class Driver:
    """Drives one benchctl stack through the Automation API."""

    def __init__(self, cfg: BenchConfig, *, on_output: Callable[[str], None] | None = None,
                 on_event: EventSink | None = None) -> None:
        self.cfg = cfg
        self.name = stack_name(cfg)
        self.backend = resolve_backend(cfg)
        self.on_output = on_output
        self.on_event = on_event
        self.work_dir = cfg.project_dir / STATE_DIR / "pulumi"
        self.run_dir = cfg.project_dir / STATE_DIR / "run" / self.name
        self._workspace: auto.LocalWorkspace | None = None

    # ------------------------------------------------------------------ workspace and stack

    def env(self) -> dict[str, str]:
        from benchctl import pulumi_cli

        cli = pulumi_cli.require()
        env = dict(self.backend.env)
        env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
        env["PULUMI_PYTHON_CMD"] = sys.executable  # the dynamic-provider plugin runs this interpreter
        env["PATH"] = f"{cli.bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env.setdefault("PULUMI_DIY_BACKEND_DISABLE_CHECKPOINT_BACKUPS", "false")
        return env

    def workspace(self) -> auto.LocalWorkspace:
        if self._workspace is None:
            from pulumi import automation as auto

            from benchctl import pulumi_cli

            cli = pulumi_cli.require()
            self.work_dir.mkdir(parents=True, exist_ok=True)
            try:
                command = auto.PulumiCommand(root=str(cli.root))
            except Exception as exc:  # an unparsable version, a broken binary
                raise ProvisionError(f"the Pulumi CLI at {cli.path} does not work: {exc}") from None
            settings = auto.ProjectSettings(name=PROJECT, runtime="python",
                                            backend=auto.ProjectBackend(url=self.backend.url))
            self._workspace = auto.LocalWorkspace(
                work_dir=str(self.work_dir), project_settings=settings, env_vars=self.env(),
                pulumi_command=command,
                secrets_provider=None if self.backend.secrets_provider == "passphrase" else self.backend.secrets_provider,
            )
        return self._workspace

    def _stack(self, program: Callable[[], None] | None = None, *, create: bool) -> auto.Stack:
        """Select (or create) the stack; raises auto.StackNotFoundError when absent and not creating."""
        from pulumi import automation as auto

        ws = self.workspace()
        ws.program = program or (lambda: None)
        with _translate_errors(self):
            if create:
                return auto.Stack.create_or_select(self.name, ws)
            return auto.Stack.select(self.name, ws)

    def exists(self) -> bool:
        with _translate_errors(self):
            return any(s.name.split("/")[-1] == self.name for s in self.workspace().list_stacks())

    def outputs(self) -> dict[str, Any]:
        """The stack's outputs as plain values ({} when the stack does not exist)."""
        from pulumi import automation as auto

        try:
            stack = self._stack(create=False)
        except auto.StackNotFoundError:
            return {}
        with _translate_errors(self):
            return {k: v.value for k, v in stack.outputs().items()}

    # ------------------------------------------------------------------ program

    def context(self, prior: dict[str, Any], results: dict[str, Any] | None = None) -> StackContext:
        """Build the program's inputs; reuse what a previous `up` recorded (keys, times, owner)."""
        from benchctl.keys import generate_ed25519
        from stacks.common import StackContext

        cfg = self.cfg
        comment = f"benchctl-{self.name}"
        if prior.get("ssh_private_key") and prior.get("host_key_private"):
            ssh_priv, host_priv = prior["ssh_private_key"], prior["host_key_private"]
            ssh_pub, host_pub = _public_line(ssh_priv, comment), _public_line(host_priv, comment + "-host")
        else:
            user_key, host_key = generate_ed25519(comment), generate_ed25519(comment + "-host")
            ssh_priv, ssh_pub = user_key.private_pem, user_key.public_line
            host_priv, host_pub = host_key.private_pem, host_key.public_line
        created = prior.get("created_at") or _now().isoformat()
        expires = prior.get("expires_at") or (datetime.fromisoformat(created) + cfg.lifetime).isoformat()
        return StackContext(
            cfg=cfg, stack_name=self.name, owner=prior.get("owner") or cfg.resolved_owner(),
            created_at=created, expires_at=expires, ssh_public_key=ssh_pub, ssh_private_key=ssh_priv,
            host_key_public=host_pub, host_key_private=host_priv, operator_cidr=self._operator_cidr(),
            results=results if results is not None else prior.get("results"), state_dir=str(self.run_dir),
        )

    def _operator_cidr(self) -> str:
        cloud = self.cfg.cloud
        if cloud is None:
            return "127.0.0.1/32"
        if cloud.ssh_cidr:
            return cloud.ssh_cidr
        from benchctl.netutil import detect_public_ip

        ip = detect_public_ip()
        if ip is None:
            raise ProvisionError(
                f"could not detect this machine's public address to allow SSH from it: set "
                f"[{self.cfg.provider}].ssh_cidr (e.g. \"203.0.113.7/32\") in {self.cfg.source}"
            )
        return f"{ip}/32"

    def _program(self, ctx: StackContext) -> Callable[[], None]:
        from stacks import load_program

        program = load_program(self.cfg.provider)
        return lambda: program(ctx)

    def _set_config(self, stack: auto.Stack) -> None:
        """Config a Pulumi user can read with `pulumi config`; secrets are set as secrets."""
        from pulumi import automation as auto

        cfg = self.cfg
        values: dict[str, auto.ConfigValue] = {
            "benchctl:bench_id": auto.ConfigValue(cfg.bench_id),
            "benchctl:provider": auto.ConfigValue(cfg.provider),
            "benchctl:engine": auto.ConfigValue(cfg.engine_name),
            "benchctl:model": auto.ConfigValue(cfg.model_name),
        }
        cloud = cfg.cloud
        if cloud is not None:
            values[f"{cfg.provider}:region"] = auto.ConfigValue(cloud.region)
            for key in ("access_key", "secret_key"):
                secret = getattr(cloud, key, None)
                if secret is not None:
                    values[f"benchctl:{cfg.provider}_{key}"] = auto.ConfigValue(secret.get_secret_value(), secret=True)
        if cfg.engine.hf_token is not None:
            values["benchctl:hf_token"] = auto.ConfigValue(cfg.engine.hf_token.get_secret_value(), secret=True)
        with _translate_errors(self):
            stack.set_all_config(values)

    # ------------------------------------------------------------------ operations

    def up(self, results: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create or update the stack; returns its outputs."""
        prior = self.outputs() if self.exists() else {}
        if prior.get("status") == "destroyed":
            prior = {}  # a tombstone: start afresh (new keys, new expiry)
        ctx = self.context(prior, results)
        stack = self._stack(self._program(ctx), create=True)
        self._set_config(stack)
        with _translate_errors(self):
            res = stack.up(on_output=self.on_output, on_event=self.on_event, color="never")
        return {k: v.value for k, v in res.outputs.items()}

    def preview(self) -> Any:
        prior = self.outputs() if self.exists() else {}
        ctx = self.context(prior if prior.get("status") != "destroyed" else {})
        stack = self._stack(self._program(ctx), create=True)
        self._set_config(stack)
        with _translate_errors(self):
            return stack.preview(on_output=self.on_output, on_event=self.on_event, color="never")

    def refresh(self) -> None:
        from pulumi import automation as auto

        try:
            stack = self._stack(create=False)
        except auto.StackNotFoundError:
            return
        with _translate_errors(self):
            stack.refresh(on_output=self.on_output, on_event=self.on_event, color="never")

    def clear_pending(self) -> list[str]:
        """Drop pending operations a killed `up`/`destroy` left in the state (refresh finds the truth)."""
        from pulumi import automation as auto

        try:
            stack = self._stack(create=False)
        except auto.StackNotFoundError:
            return []
        with _translate_errors(self):
            state = stack.export_stack()
            pending = state.deployment.get("pending_operations") or []
            if not pending:
                return []
            state.deployment["pending_operations"] = []
            stack.import_stack(state)
        return [f"{p.get('type')} {p.get('resource', {}).get('urn', '').rsplit('::', 1)[-1]}" for p in pending]

    def destroy(self, *, remove: bool = False) -> dict[str, Any]:
        """Destroy everything; idempotent. Leaves a resource-free "tombstone" that keeps the results.

        Returns what was done: {"existed", "cleared_pending", "orphans_stopped"}.
        """
        from pulumi import automation as auto

        report: dict[str, Any] = {"existed": False, "cleared_pending": [], "orphans_stopped": []}
        try:
            stack = self._stack(create=False)
        except auto.StackNotFoundError:
            report["orphans_stopped"] = self._sweep()
            return report
        report["existed"] = True
        prior = self.outputs()
        if prior.get("status") == "destroyed" and not remove:
            report["orphans_stopped"] = self._sweep()
            return report  # already destroyed: a second destroy is a no-op
        report["cleared_pending"] = self.clear_pending()
        with _translate_errors(self):
            if report["cleared_pending"]:
                stack.refresh(on_output=self.on_output, on_event=self.on_event, color="never")
            stack.destroy(on_output=self.on_output, on_event=self.on_event, color="never")
        report["orphans_stopped"] = self._sweep()
        with _translate_errors(self):
            if remove:
                self.workspace().remove_stack(self.name)
            elif prior.get("status") != "destroyed":
                stack.workspace.program = _tombstone(prior)
                stack.up(on_output=self.on_output, color="never")
        return report

    def _sweep(self) -> list[str]:
        if self.cfg.provider != "local":
            return []
        from stacks.local import sweep_orphans

        return sweep_orphans(self.run_dir)

    def cancel(self) -> None:
        with _translate_errors(self):
            self._stack(create=False).cancel()


def _tombstone(prior: dict[str, Any]) -> Callable[[], None]:
    """A program with no resources that keeps who/what/results after destroy, for `ls` and teammates."""
    keep = ("bench_id", "provider", "engine", "model", "owner", "created_at", "expires_at",
            "gpu_instance_type", "launcher_instance_type", "results")

    def program() -> None:
        import pulumi

        for key in keep:
            if key in prior:
                pulumi.export(key, prior[key])
        pulumi.export("status", "destroyed")
        pulumi.export("destroyed_at", _now().isoformat())

    return program


class _translate_errors:
    """Turn Automation API errors into benchctl errors with a message a user can act on."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        from pulumi import automation as auto

        if isinstance(exc, auto.ConcurrentUpdateError):
            raise StackLockedError(lock_message(self.driver.name, str(exc))) from None
        if isinstance(exc, (auto.StackNotFoundError,)):
            return False
        if isinstance(exc, auto.CommandError):
            raise ProvisionError(f"pulumi failed on stack {self.driver.name!r}: {_useful_lines(str(exc))}") from None
        return False


def lock_message(stack: str, text: str) -> str:
    """Who holds the lock, since when: Pulumi's DIY lock error names the lock file, user, host, pid and time."""
    m = re.search(r"created by (\S+?)@(\S+) \(pid (\d+)\) at ([0-9T:.\-+Z ]+)", text)
    if m:
        user, host, pid, when = m.groups()
        return (f"stack {stack!r} is locked by {user}@{host} (pid {pid}) since {when.strip()}: another "
                f"benchctl is working on it. If that process is dead, clear the lock with `benchctl cancel`.")
    return f"stack {stack!r} is locked by another update. If no one is running, clear it with `benchctl cancel`."


def _useful_lines(text: str, limit: int = 12) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if re.search(r"error|failed|Exception|not ready|exited", ln, re.I)]
    return "\n  ".join((keep or lines)[-limit:])


def expiry_of(outputs: dict[str, Any]) -> datetime | None:
    text = outputs.get("expires_at")
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def age(outputs: dict[str, Any]) -> timedelta | None:
    text = outputs.get("created_at")
    return _now() - datetime.fromisoformat(text) if text else None
