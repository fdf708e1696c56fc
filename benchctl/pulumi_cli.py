"""Find the pinned Pulumi CLI that `make setup` (scripts/install-pulumi.sh) put in the cache.

Order: $BENCHCTL_PULUMI (a binary or the folder holding it), the cache
(~/.cache/benchctl/pulumi/v<PINNED>/bin, or $BENCHCTL_CACHE/…), then `pulumi` on PATH.
The user never edits PATH: the driver hands this folder to the Automation API.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PINNED_VERSION = "3.276.0"


@dataclass(frozen=True)
class PulumiCli:
    path: Path          # the `pulumi` executable
    version: str | None  # as `pulumi version` prints it, without the leading "v"

    @property
    def bin_dir(self) -> Path:
        return self.path.parent

    @property
    def root(self) -> Path:
        """What the Automation API's `PulumiCommand(root=...)` expects: the folder above bin/."""
        return self.path.parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("BENCHCTL_CACHE") or Path.home() / ".cache" / "benchctl")


def _candidates() -> list[Path]:
    out: list[Path] = []
    env = os.environ.get("BENCHCTL_PULUMI")
    if env:
        p = Path(env)
        out.append(p / "pulumi" if p.is_dir() else p)
    out.append(cache_dir() / "pulumi" / f"v{PINNED_VERSION}" / "bin" / "pulumi")
    on_path = shutil.which("pulumi")
    if on_path:
        out.append(Path(on_path))
    return out


@functools.lru_cache(maxsize=1)
def find() -> PulumiCli | None:
    """The first usable Pulumi CLI, or None when `make setup` has not been run."""
    for cand in _candidates():
        if cand.is_file() and os.access(cand, os.X_OK):
            return PulumiCli(path=cand, version=_version(cand))
    return None


def _version(path: Path) -> str | None:
    try:
        out = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.strip().lstrip("v")
    return text or None


def require() -> PulumiCli:
    from benchctl.errors import NotAvailableError

    cli = find()
    if cli is None:
        raise NotAvailableError(
            f"the Pulumi CLI is not installed: run `make setup` (it caches pulumi v{PINNED_VERSION} in "
            f"{cache_dir() / 'pulumi'}), or set BENCHCTL_PULUMI to a pulumi binary"
        )
    return cli
