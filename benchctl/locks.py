"""Stack locks: who holds one, since when, and whether that process is still alive.

Pulumi's DIY backends (file, s3, gs, azblob) lock a stack for the length of an update with a file
`.pulumi/locks/organization/benchctl/<stack>/<uuid>.json` that holds the pid, user, host and start
time of the `pulumi` process that took it. A process killed with SIGKILL (or a machine that died)
leaves that file behind, and every later update fails with "the stack is currently locked by 1
lock(s)" until somebody deletes it (`pulumi cancel`, `benchctl cancel`).

A lock is *stale* when its holder ran on this host and that process is gone: only then may benchctl
clear it without asking. A lock from another host is never cleared automatically: its pid means
nothing here. Pulumi Cloud keeps its own locks (no files, no pid), so nothing here applies to it.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchctl.errors import StackLockedError

if TYPE_CHECKING:
    from benchctl.automation import Driver
    from benchctl.backends import Backend

LOCK_DIR = ".pulumi/locks/organization/benchctl"
# "  s3://bucket/.pulumi/locks/organization/benchctl/x/<uuid>.json: created by alice@box (pid 42) at 2026-…Z"
_LOCK_LINE = re.compile(r"(?:(\S+\.json): )?created by (\S+?)@(\S+) \(pid (\d+)\) at (\S+)")


@dataclass(frozen=True)
class LockHolder:
    """One lock on a stack, as Pulumi recorded it."""

    user: str
    host: str
    pid: int
    since: str        # RFC 3339, as Pulumi wrote it
    where: str = ""   # the lock file (path or URL), when known

    def on_this_host(self) -> bool:
        """Same host name as here; a generic name ("localhost") could be any container, so it never is."""
        generic = self.host.split(".")[0] in ("", "localhost", "?")
        return not generic and self.host == socket.gethostname()  # what Pulumi records (os.Hostname)

    def alive(self) -> bool | None:
        """Whether the holder still runs: True/False on this host, None on another host (unknowable here)."""
        if not self.on_this_host():
            return None
        return _pid_alive(self.pid, _parse_time(self.since))

    def describe(self) -> str:
        return f"{self.user}@{self.host} (pid {self.pid}) since {self.since}"

    def state(self) -> str:
        alive = self.alive()
        if alive is None:
            return "on another host: benchctl cannot tell whether it still runs"
        return "that process is still running on this host" if alive else "that process is no longer running"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "alive": self.alive()}


class StackLockedByError(StackLockedError):
    """Another update holds the stack's lock; `holders` says who (empty when the backend does not say)."""

    def __init__(self, message: str, holders: list[LockHolder]) -> None:
        super().__init__(message)
        self.holders = holders


def stale(holders: list[LockHolder]) -> bool:
    """True when there are locks and every one belongs to a dead process on this host."""
    return bool(holders) and all(h.alive() is False for h in holders)


def parse_lock_error(text: str) -> list[LockHolder]:
    """The holders named in Pulumi's "the stack is currently locked by N lock(s)" error (DIY backends)."""
    return [LockHolder(user=m[2], host=m[3], pid=int(m[4]), since=m[5], where=m[1] or "")
            for m in _LOCK_LINE.finditer(text)]


def read_locks(backend: Backend, stack: str | None = None) -> dict[str, list[LockHolder]] | None:
    """Lock files per stack, read straight from the backend; None where this backend's locks cannot be read.

    Readable: file:// (the filesystem) and s3:// (boto3, when installed). gs:// and azblob:// would
    need their SDKs, and Pulumi Cloud has no lock files; there a locked stack shows up as an error
    from the next update, which names the holder anyway.
    """
    if backend.kind == "file":
        return _read_file_locks(Path(backend.url[len("file://"):]) / LOCK_DIR, stack)
    if backend.kind == "s3":
        try:
            return _read_s3_locks(backend.url, stack)
        except ImportError:
            return None
    return None


def stack_locks(driver: Driver) -> list[LockHolder] | None:
    """The locks on the driver's stack ([] when none), or None when this backend's locks cannot be read."""
    found = read_locks(driver.backend, driver.name)
    return None if found is None else found.get(driver.name, [])


def _holder(data: dict[str, Any], where: str) -> LockHolder:
    return LockHolder(user=str(data.get("username", "?")), host=str(data.get("hostname", "?")),
                      pid=int(data.get("pid", 0) or 0), since=_short_time(str(data.get("timestamp", ""))), where=where)


def _read_file_locks(root: Path, stack: str | None) -> dict[str, list[LockHolder]]:
    import json

    out: dict[str, list[LockHolder]] = {}
    dirs = [root / stack] if stack else (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    for d in dirs:
        for f in sorted(d.glob("*.json")) if d.is_dir() else []:
            try:
                out.setdefault(d.name, []).append(_holder(json.loads(f.read_text()), str(f)))
            except (OSError, ValueError):
                continue  # deleted under us, or half written: the next look will tell
    return out


def _read_s3_locks(url: str, stack: str | None) -> dict[str, list[LockHolder]]:
    import json

    from benchctl.backends import s3_client

    client, bucket, prefix = s3_client(url)
    base = f"{prefix}{LOCK_DIR}/" + (f"{stack}/" if stack else "")
    out: dict[str, list[LockHolder]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            name = key[len(f"{prefix}{LOCK_DIR}/"):].split("/", 1)[0]
            if not key.endswith(".json"):
                continue
            try:
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                out.setdefault(name, []).append(_holder(json.loads(body), f"s3://{bucket}/{key}"))
            except Exception:  # deleted between list and read: the lock is gone
                continue
    return out


# ------------------------------------------------------------------------------------------ time and pids


def _parse_time(text: str) -> datetime | None:
    """RFC 3339 with any number of fraction digits and a Z (Go's format), on Python 3.10 too."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not m:
        return None
    frac = f".{m[2][:6]}" if m[2] else ""
    zone = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(f"{m[1]}{frac}{zone}")


def _short_time(text: str) -> str:
    """Go's timestamp with nanoseconds, shortened to seconds as Pulumi's own error message shows it."""
    when = _parse_time(text)
    if when is None:
        return text
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _process_start(pid: int) -> datetime | None:
    """When a process started (Linux /proc), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
                     if ln.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    ticks = int(stat[stat.rindex(")") + 2:].split()[19])
    return datetime.fromtimestamp(btime + ticks / os.sysconf("SC_CLK_TCK"), tz=timezone.utc)


def _pid_alive(pid: int, since: datetime | None) -> bool:
    """Whether `pid` is still the process that took the lock at `since` (a reused pid started later)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by somebody else
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    started = _process_start(pid)
    return not (started and since and started > since + timedelta(seconds=2))
