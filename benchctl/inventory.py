"""The team's inventory: every benchctl stack in the backend, its status, expiry, owner and last results.

There is no separate database to drift from reality: the state backend the team shares *is* the
inventory. Each stack is read with two plain Pulumi commands, neither of which takes the lock or
needs the secrets key: `pulumi stack export` (resources, pending operations and the outputs
contract of stacks/common.py: `status`, `owner`, `expires_at`, `results`, …) and
`pulumi stack history --page-size 1` (did the last update fail?).

`destroy_expired` is the cron-able sweep: it destroys every stack past its `expires_at` that still
has resources, from the stack's own outputs, without the bench.toml that created it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchctl.locks import LockHolder, read_locks, stale

if TYPE_CHECKING:
    from benchctl.automation import Driver
    from benchctl.config import BenchConfig

DEFAULT_CONFIG = "bench.toml"
_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in exported state
_PROVIDER_OF_TYPE = {"aws:": "aws", "gcp:": "gcp", "scaleway:": "scaleway", "pulumi-python:dynamic:": "local"}


@dataclass
class StackInfo:
    """One row of `benchctl ls`."""

    name: str
    status: str                          # running | failed | destroyed | updating | unknown (unreadable)
    provider: str | None = None
    gpu_instance_type: str | None = None
    launcher_instance_type: str | None = None
    owner: str | None = None
    created_at: str | None = None
    expires_at: str | None = None
    age_s: int | None = None
    expired: bool = False                # past expires_at with resources still there
    resources: int = 0                   # real resources (not the stack itself, not providers)
    pending_operations: int = 0
    last_update: dict[str, Any] | None = None
    results: dict[str, Any] | None = None
    headline: str | None = None
    locks: list[LockHolder] | None = None  # None: this backend's locks cannot be read here
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["locks"] = None if self.locks is None else [h.to_json() for h in self.locks]
        return data


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _pulumi(driver: Driver, *args: str) -> Any:
    """Run one read-only Pulumi command in the driver's workspace and parse its JSON."""
    ws = driver.workspace()
    return json.loads(ws.pulumi_command.run(list(args), ws.work_dir, ws.env_vars).stdout or "null")


def backend_stacks(base: BenchConfig, *, expired_only: bool = False) -> list[StackInfo]:
    """Every benchctl stack in `base`'s backend; a file backend that does not exist yet is left uncreated."""
    from benchctl.automation import Driver
    from benchctl.backends import resolve_backend

    backend = resolve_backend(base, create=False)
    if backend.kind == "file" and not Path(backend.url[len("file://"):]).exists():
        return []  # `benchctl ls` in a directory with no state must not create any
    return list_stacks(Driver(base), expired_only=expired_only)


def list_stacks(driver: Driver, *, expired_only: bool = False) -> list[StackInfo]:
    """Every benchctl stack in the driver's backend (any bench_id), sorted by name."""
    from pulumi import automation as auto

    from benchctl.automation import _translate_errors

    with _translate_errors(driver):
        names = sorted(s.name.split("/")[-1] for s in driver.workspace().list_stacks())
    locks = read_locks(driver.backend) if names else {}
    out = []
    for name in names:
        try:
            info = read_stack(driver, name, None if locks is None else locks.get(name, []))
        except auto.CommandError as exc:
            info = StackInfo(name=name, status="unknown", error=_last_error_line(str(exc)))
        if info.expired or not expired_only:
            out.append(info)
    return out


def read_stack(driver: Driver, name: str, locks: list[LockHolder] | None = None) -> StackInfo:
    """One stack's row, from its exported state and its last history entry."""
    deployment = (_pulumi(driver, "stack", "export", "--stack", name) or {}).get("deployment") or {}
    history = _pulumi(driver, "stack", "history", "--json", "--page-size", "1", "--stack", name) or []
    resources = deployment.get("resources") or []
    root: dict[str, Any] = next((r for r in resources if r.get("type") == "pulumi:pulumi:Stack"), {})
    outputs = {k: v for k, v in (root.get("outputs") or {}).items()
               if not (isinstance(v, dict) and _SECRET_SIG in v)}
    real = [r for r in resources if r.get("type") != "pulumi:pulumi:Stack"
            and not str(r.get("type", "")).startswith("pulumi:providers:")]
    pending = len(deployment.get("pending_operations") or [])
    last = history[0] if history else None
    created, expires = _time(outputs.get("created_at")), _time(outputs.get("expires_at"))
    return StackInfo(
        name=name,
        status=status_of(len(real), pending, outputs, last, updating=bool(locks) and not stale(locks or [])),
        provider=outputs.get("provider") or _provider_from_types(real),
        gpu_instance_type=outputs.get("gpu_instance_type"),
        launcher_instance_type=outputs.get("launcher_instance_type"),
        owner=outputs.get("owner"),
        created_at=outputs.get("created_at"),
        expires_at=outputs.get("expires_at"),
        age_s=int((_now() - created).total_seconds()) if created else None,
        expired=bool(real) and expires is not None and expires <= _now(),
        resources=len(real),
        pending_operations=pending,
        last_update={k: last.get(k) for k in ("kind", "result", "startTime", "endTime")} if last else None,
        results=outputs.get("results"),
        headline=headline_text(outputs.get("results")),
        locks=locks,
    )


def status_of(resources: int, pending: int, outputs: dict[str, Any], last: dict[str, Any] | None,
              *, updating: bool = False) -> str:
    """running, failed or destroyed (or updating while a live process holds the lock).

    failed: the last update failed, a killed run left operations pending, or resources exist that no
    update ever finished exporting (a crash in the middle of the first `up`). destroyed: nothing is
    left (the tombstone `destroy` leaves has no resources).
    """
    if updating:
        return "updating"
    if (last and last.get("result") == "failed") or pending:
        return "failed"
    if resources == 0:
        return "destroyed"
    return "running" if outputs.get("status") == "running" else "failed"


def _provider_from_types(resources: list[dict[str, Any]]) -> str | None:
    for r in resources:
        for prefix, provider in _PROVIDER_OF_TYPE.items():
            if str(r.get("type", "")).startswith(prefix):
                return provider
    return None


def headline_text(results: Any) -> str | None:
    """The best load point of the last run, in one short line."""
    if not isinstance(results, dict) or not results.get("points"):
        return None
    best = max(results["points"], key=lambda p: p.get("output_tokens_per_s") or 0)
    load = f"c={best['concurrency']}" if best.get("concurrency") else f"{best.get('rate')} req/s offered"
    parts = [f"{best[k]:.1f} {unit}" for k, unit in (("requests_per_s", "req/s"), ("output_tokens_per_s", "tok/s"))
             if isinstance(best.get(k), (int, float))]
    if isinstance(best.get("ttft_ms_p50"), (int, float)):
        parts.append(f"TTFT p50 {best['ttft_ms_p50']:.0f} ms")
    return f"{results.get('run_id', '?')}: {load} {', '.join(parts)}".strip()


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("error")]
    return (lines or [text.strip()[-300:]])[-1]


# ------------------------------------------------------------------------------------------ rendering


def _duration(seconds: float) -> str:
    s = int(abs(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d}d{h}h" if d else f"{h}h{m:02d}m" if h else f"{m}m"


def _expiry(info: StackInfo) -> str:
    when = _time(info.expires_at)
    if when is None:
        return "-"
    left = (when - _now()).total_seconds()
    if info.resources == 0:
        return "-"
    return f"in {_duration(left)}" if left > 0 else f"EXPIRED {_duration(left)} ago"


def _lock(info: StackInfo) -> str:
    if not info.locks:
        return ""
    h = info.locks[0]
    return f"locked by {h.user}@{h.host} pid {h.pid}" + (" (dead)" if h.alive() is False else "")


def render_table(stacks: list[StackInfo]) -> str:
    """A plain table for a terminal (see `--json` for every field)."""
    if not stacks:
        return "no benchctl stacks in this backend"
    head = ["STACK", "PROVIDER", "GPU / LAUNCHER", "STATUS", "OWNER", "AGE", "EXPIRES", "LAST RESULTS", "LOCK"]
    rows = [head]
    for s in stacks:
        types = f"{s.gpu_instance_type or '-'} / {s.launcher_instance_type or '-'}"
        rows.append([s.name, s.provider or "-", types, s.status, s.owner or "-",
                     _duration(s.age_s) if s.age_s is not None else "-", _expiry(s), s.headline or "-",
                     _lock(s) or (s.error or "")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# ------------------------------------------------------------------------------------------ acting on stacks


def base_config(config_path: str) -> BenchConfig:
    """The config that says where the state is, for commands about every stack (`ls`, `destroy --expired`).

    Without a bench.toml (a cron job, a teammate's empty directory) the backend comes from
    PULUMI_BACKEND_URL, else it is the default file backend of the current directory.
    """
    from benchctl.config import config_from_dict, load_config

    if Path(config_path).exists() or config_path != DEFAULT_CONFIG:
        return load_config(config_path)
    return config_from_dict({"bench_id": "benchctl"}, source=Path.cwd() / DEFAULT_CONFIG)


def driver_for(base: BenchConfig, name: str, provider: str | None, **kwargs: Any) -> Driver:
    """A driver for someone else's stack: the base config's backend and directory, the stack's own name
    and provider. Enough to destroy it (destroy runs no program; each cloud's provider reads its settings
    from the state, its credentials from the environment), not to update it."""
    from benchctl.automation import Driver

    return Driver(base.model_copy(update={"bench_id": name, "provider": provider or "local"}), **kwargs)


def destroy_expired(base: BenchConfig, on_stack: Callable[[StackInfo], None] | None = None,
                    **driver_kwargs: Any) -> list[dict[str, Any]]:
    """Destroy every stack past its expiry that still has resources; one report per stack.

    A stack that fails to destroy (missing cloud credentials, a live lock) does not stop the others:
    its report carries the error.
    """
    from benchctl.errors import BenchctlError

    reports = []
    for info in backend_stacks(base, expired_only=True):
        if on_stack is not None:
            on_stack(info)
        report: dict[str, Any] = {"stack": info.name, "provider": info.provider, "owner": info.owner,
                                  "expires_at": info.expires_at, "destroyed": False, "error": None}
        try:
            report.update(driver_for(base, info.name, info.provider, **driver_kwargs).destroy())
            report["destroyed"] = True
        except BenchctlError as exc:
            report["error"] = str(exc)
        reports.append(report)
    return reports


def sweep_untracked(run_dir: Path, deployment: dict[str, Any]) -> list[str]:
    """Stop the local stack's processes that have a pidfile but are not in the state (their `create`
    was cut short by a crash); processes the state tracks are left alone."""
    from stacks.local import stop_process_group

    tracked = {str((r.get("outputs") or {}).get("pid")) for r in deployment.get("resources") or []}
    stopped = []
    for pidfile in sorted(run_dir.glob("*.pid")) if run_dir.is_dir() else []:
        try:
            pid, start = pidfile.read_text().split()
        except (OSError, ValueError):
            continue
        if pid in tracked:
            continue
        if stop_process_group(int(pid), start):
            stopped.append(f"{pidfile.stem} (pid {pid})")
        pidfile.unlink(missing_ok=True)
    return stopped



def sweep_plugins(work_dir: Path) -> list[str]:
    """Stop the Pulumi plugins (providers, dynamic providers) a killed `pulumi` left running in this workspace.

    The engine starts each plugin in its own process group, so killing benchctl's group leaves them
    behind, orphaned, serving nobody. A plugin is ours to stop when it runs in `work_dir` and its parent
    is no longer a `pulumi` process: the plugins of a live update (another stack of the same project
    directory) are left alone. Linux only (/proc); elsewhere nothing is done.
    """
    import os
    import signal

    proc = Path("/proc")
    stopped: list[str] = []
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "pulumi.dynamic" not in argv and "pulumi-resource-" not in argv:
                continue
            if os.readlink(entry / "cwd") != str(work_dir):
                continue
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parent = os.readlink(proc / str(ppid) / "exe") if ppid > 1 else ""
        except (OSError, ValueError, IndexError):
            continue
        if Path(parent).name == "pulumi":
            continue
        try:
            os.kill(int(entry.name), signal.SIGKILL)
            stopped.append(f"pulumi plugin (pid {entry.name})")
        except OSError:
            pass
    return stopped
