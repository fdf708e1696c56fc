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
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from benchctl.backends import STATE_DIR, backend_error, redact_url, resolve_backend
from benchctl.backends import Backend as Backend  # re-exported: the backend logic moved to benchctl.backends
from benchctl.errors import ProvisionError
from benchctl.locks import StackLockedByError, parse_lock_error, stale

if TYPE_CHECKING:
    from pulumi import automation as auto

    from benchctl.config import BenchConfig
    from stacks.common import StackContext

PROJECT = "benchctl"


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
                 on_event: EventSink | None = None, on_notice: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.name = stack_name(cfg)
        self.backend = resolve_backend(cfg)
        self.on_output = on_output
        self.on_event = on_event
        self.on_notice = on_notice or _warn  # what crash recovery did, so the user knows
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
                secrets_provider=self.backend.stack_secrets_provider,
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

    def _existing_stack(self) -> auto.Stack | None:
        """The stack, or None when it does not exist in the backend."""
        from pulumi import automation as auto

        try:
            return self._stack(create=False)
        except auto.StackNotFoundError:
            return None

    def outputs(self) -> dict[str, Any]:
        """The stack's outputs as plain values ({} when the stack does not exist)."""
        stack = self._existing_stack()
        if stack is None:
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
        """Create or update the stack; returns its outputs.

        After a crash it first recovers: a stale lock (its holder dead, on this host) is cleared, and
        operations a killed run left pending are cleared, their lost processes stopped, and the
        state refreshed. A lock held by a live process fails fast (StackLockedError).
        """
        return self._recovering(lambda: self._up(results))

    def ensure_plugin(self) -> None:
        """Install the cloud's Pulumi provider plugin, pinned to the installed SDK, before the first `up`.

        Inline programs declare no plugins, so the engine would not fetch them by itself. Needs the
        internet once per machine (the plugin is cached in PULUMI_HOME).
        """
        plugin = required_plugin(self.cfg.provider)
        if plugin is None:
            return
        name, version = plugin["name"], str(plugin["version"]).lstrip("v")
        ws = self.workspace()
        with _translate_errors(self):
            installed = {(p.name, str(p.version or "").lstrip("v")) for p in ws.list_plugins() if p.kind == "resource"}
        if (name, version) in installed:
            return
        self.on_notice(f"installing the Pulumi {name} plugin v{version} (once per machine)")
        from pulumi import automation as auto

        try:
            if plugin.get("server"):
                ws.install_plugin_from_server(name, f"v{version}", plugin["server"])
            else:
                ws.install_plugin(name, f"v{version}")
        except auto.CommandError as exc:
            raise ProvisionError(
                f"could not install the Pulumi {name} plugin v{version}, which the {self.cfg.provider} stack "
                f"needs (the first run on a machine downloads it): {_useful_lines(str(exc), 3)}"
            ) from None

    def _up(self, results: dict[str, Any] | None) -> dict[str, Any]:
        self.ensure_plugin()
        prior = {}
        if self._existing_stack() is not None:
            self._recover_pending()
            prior = self.outputs()
        if prior.get("status") == "destroyed":
            prior = {}  # a tombstone: start afresh (new keys, new expiry)
        ctx = self.context(prior, results)
        stack = self._stack(self._program(ctx), create=True)
        self._set_config(stack)
        with _translate_errors(self):
            res = stack.up(on_output=self.on_output, on_event=self.on_event, color="never")
        return {k: v.value for k, v in res.outputs.items()}

    def preview(self) -> Any:
        self.ensure_plugin()
        prior = self.outputs()
        ctx = self.context(prior if prior.get("status") != "destroyed" else {})
        stack = self._stack(self._program(ctx), create=True)
        self._set_config(stack)
        with _translate_errors(self):
            return stack.preview(on_output=self.on_output, on_event=self.on_event, color="never")

    def refresh(self) -> dict[str, int]:
        """Refresh the state from reality; returns the change counts ({"delete": 1} when a process died)."""
        stack = self._existing_stack()
        if stack is None:
            return {}
        with _translate_errors(self):
            res = stack.refresh(on_output=self.on_output, on_event=self.on_event, color="never")
        counts = res.summary.resource_changes or {}
        return {str(k): int(v) for k, v in counts.items() if str(k) not in ("same",)}

    def clear_pending(self) -> list[str]:
        """Drop pending operations a killed `up`/`destroy` left in the state (refresh finds the truth)."""
        stack = self._existing_stack()
        if stack is None:
            return []
        with _translate_errors(self):
            state = stack.export_stack()
            deployment = dict(state.deployment or {})
            pending = deployment.get("pending_operations") or []
            if not pending:
                return []
            deployment["pending_operations"] = []
            state.deployment = deployment
            stack.import_stack(state)
        return [f"{p.get('type')} {p.get('resource', {}).get('urn', '').rsplit('::', 1)[-1]}" for p in pending]

    def destroy(self, *, remove: bool = False) -> dict[str, Any]:
        """Destroy everything; idempotent. Leaves a resource-free "tombstone" that keeps the results.

        A stale lock left by a killed benchctl on this host is cleared first (see `up`).
        Returns what was done: {"existed", "cleared_pending", "orphans_stopped", "cleared_lock"}.
        """
        cleared: list[str] = []
        report = self._recovering(lambda: self._destroy(remove), cleared)
        report["cleared_lock"] = cleared
        return report

    def _destroy(self, remove: bool) -> dict[str, Any]:

        report: dict[str, Any] = {"existed": False, "cleared_pending": [], "orphans_stopped": []}
        stack = self._existing_stack()
        if stack is None:
            report["orphans_stopped"] = self._sweep()
            return report
        report["existed"] = True
        prior = self.outputs()
        if prior.get("status") == "destroyed" and not remove:
            report["orphans_stopped"] = self._sweep()
            return report  # already destroyed: a second destroy is a no-op
        report["cleared_pending"] = self.clear_pending()
        if report["cleared_pending"]:
            from benchctl.inventory import sweep_plugins

            report["orphans_stopped"] = sweep_plugins(self.work_dir)
        with _translate_errors(self):
            if report["cleared_pending"]:
                stack.refresh(on_output=self.on_output, on_event=self.on_event, color="never")
            stack.destroy(on_output=self.on_output, on_event=self.on_event, color="never")
        report["orphans_stopped"] += self._sweep()
        with _translate_errors(self):
            if remove:
                self.workspace().remove_stack(self.name)
            elif prior.get("status") != "destroyed":
                stack.workspace.program = _tombstone({"bench_id": self.name, "provider": self.cfg.provider, **prior})
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

    # ------------------------------------------------------------------ crash recovery

    def _recovering(self, operation: Callable[[], _T], cleared: list[str] | None = None) -> _T:
        """Run `operation`; if a stale lock stops it, clear the lock (with a notice) and run it once more."""
        try:
            return operation()
        except StackLockedByError as exc:
            if not stale(exc.holders):
                raise
            self.cancel()
            for h in exc.holders:
                self.on_notice(f"cleared the lock of a benchctl that died: {h.describe()}")
                if cleared is not None:
                    cleared.append(h.describe())
            from benchctl.inventory import sweep_plugins

            for item in sweep_plugins(self.work_dir):
                self.on_notice(f"stopped a process the dead run left behind: {item}")
        return operation()

    def _recover_pending(self) -> None:
        """Before an update: clear what a killed run left pending, stop its lost processes, refresh."""
        from benchctl.inventory import sweep_plugins, sweep_untracked

        stack = self._stack(create=False)
        with _translate_errors(self):
            deployment = dict(stack.export_stack().deployment or {})
        if not deployment.get("pending_operations"):
            return
        for item in sweep_plugins(self.work_dir):  # first: a plugin left mid-create could still start something
            self.on_notice(f"stopped a process the state had lost: {item}")
        for item in self.clear_pending():
            self.on_notice(f"cleared a pending operation left by a killed run: {item}")
        if self.cfg.provider == "local":
            for item in sweep_untracked(self.run_dir, deployment):
                self.on_notice(f"stopped a process the state had lost: {item}")
        with _translate_errors(self):
            stack.refresh(on_output=self.on_output, on_event=self.on_event, color="never")


_T = TypeVar("_T")


def _warn(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")
    sys.stderr.flush()


def required_plugin(provider: str) -> dict[str, Any] | None:
    """The provider plugin a cloud's SDK was generated for, from its pulumi-plugin.json (no SDK import)."""
    import importlib.util
    import json

    from stacks import EXTRAS

    sdk = EXTRAS.get(provider)
    spec = importlib.util.find_spec(sdk) if sdk else None
    if spec is None or not spec.submodule_search_locations:
        return None
    manifest = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
    return json.loads(manifest.read_text()) if manifest.exists() else None  # type: ignore[no-any-return]


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

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if not isinstance(exc, Exception):  # None, KeyboardInterrupt, SystemExit: nothing to translate
            return False
        from pulumi import automation as auto

        if isinstance(exc, auto.ConcurrentUpdateError):
            raise StackLockedByError(lock_message(self.driver.name, str(exc)), parse_lock_error(str(exc))) from None
        if isinstance(exc, (auto.StackNotFoundError,)):
            return False
        unreachable = backend_error(str(exc)) if isinstance(exc, auto.CommandError) else None
        if unreachable:
            raise ProvisionError(f"cannot reach the state backend {redact_url(self.driver.backend.url)}: "
                                 f"{redact_url(unreachable)}") from None
        if isinstance(exc, auto.CommandError):
            raise ProvisionError(f"pulumi failed on stack {self.driver.name!r}: {_useful_lines(str(exc))}") from None
        return False


def lock_message(stack: str, text: str) -> str:
    """Who holds the lock, since when, and whether that process still runs.

    Pulumi 3.276's DIY error: "the stack is currently locked by N lock(s). Either wait … `pulumi cancel`."
    then one line per lock: "  <lock file URL>: created by USER@HOST (pid PID) at RFC3339". Pulumi
    Cloud's "[409] Conflict: Another update is currently in progress." names nobody.
    """
    holders = parse_lock_error(text)
    if holders:
        who = "; ".join(f"{h.describe()} ({h.state()})" for h in holders)
        if stale(holders):
            return f"stack {stack!r} is locked by {who}. Clear the lock with `benchctl cancel`."
        return (f"stack {stack!r} is locked by {who}: another benchctl is working on it. If that process "
                f"is dead, clear the lock with `benchctl cancel`.")
    return f"stack {stack!r} is locked by another update. If no one is running, clear it with `benchctl cancel`."


def _useful_lines(text: str, limit: int = 12) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if re.search(r"error|failed|Exception|not ready|exited", ln, re.I)]
    return "\n  ".join((keep or lines)[-limit:])
