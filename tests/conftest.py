"""Shared fixtures: a throwaway project directory with its own state, and the CLI as a subprocess.

Every stack a test creates is destroyed by the `project` fixture, even when the test fails, and any
process the stack started (they carry BENCHCTL_STACK_PROCESS in their environment and live under
the project's .benchctl/run) is killed as a last resort, so nothing leaks between tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHCTL = [sys.executable, "-m", "benchctl"]


def stack_processes(root: Path) -> list[int]:
    """Pids of live processes started by a stack under `root` (by their marker and their cwd)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cwd = os.readlink(proc / "cwd")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"BENCHCTL_STACK_PROCESS=" in environ and cwd.startswith(str(root)) and state != "Z":
            pids.append(int(proc.name))
    return pids


@dataclass
class Project:
    """A directory with a bench.toml, its own state backend and passphrase, and its own PULUMI_HOME."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "bench.toml"

    def write_config(self, text: str, name: str = "bench.toml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path

    def cli(self, *args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*BENCHCTL, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"benchctl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*BENCHCTL, *args], cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)


def make_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "AWS_", "BENCHCTL_"))}
    env.update(PULUMI_HOME=str(root / ".pulumi-home"), PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project(root=tmp_path / "proj", env=make_env(tmp_path))
    proj.root.mkdir()
    yield proj
    cleanup_project(proj)


def cleanup_project(proj: Project) -> None:
    """Destroy whatever the test left, then kill any straggler process and remove the state."""
    for cfg in proj.root.glob("*.toml"):
        if (proj.root / ".benchctl").exists():
            subprocess.run([*BENCHCTL, "cancel", "-c", str(cfg), "--yes"], cwd=proj.root, env=proj.env,
                           capture_output=True, timeout=120)
            subprocess.run([*BENCHCTL, "destroy", "-c", str(cfg)], cwd=proj.root, env=proj.env,
                           capture_output=True, timeout=300)
    for pid in stack_processes(proj.root):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(proj.root, ignore_errors=True)


def sshd_available() -> bool:
    return bool(shutil.which("sshd") or Path("/usr/sbin/sshd").exists())
