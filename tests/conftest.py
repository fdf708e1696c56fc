"""Shared fixtures: a throwaway project directory with its own state, and the CLI as a subprocess.

Every stack a test creates is destroyed by the `project` fixture, even when the test fails, and any
process the stack started (they carry BENCHCTL_STACK_PROCESS in their environment and live under
the project's .benchctl/run) is killed as a last resort, so nothing leaks between tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHCTL = [sys.executable, "-m", "benchctl"]


def stack_processes(root: Path) -> list[int]:
    """Pids of live processes started by a stack of the project at `root`.

    A process belongs to a stack when it runs inside the project's `.benchctl/run` (the model server,
    the launcher's runner) or names a file there on its command line (sshd rewrites its environment
    with its process title, but keeps `-f …/.benchctl/run/…/sshd_config` in it). benchctl and pulumi
    themselves run elsewhere and are not counted.
    """
    run = str(root / ".benchctl" / "run")
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(run) or run in cmdline):
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

    def popen(self, *args: str) -> Watched:
        proc = subprocess.Popen([*BENCHCTL, *args], cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        return Watched(proc)


class Watched:
    """A benchctl process whose output is collected by a thread, so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.output = ""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.output += line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if needle in self.output:
                    return
            if self.proc.poll() is not None:
                self._thread.join(5)
                if needle in self.output:
                    return
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not seen (exit {self.proc.poll()}); output so far:\n{self.output}")

    def finish(self, timeout: float = 300) -> int:
        """Wait for the exit; returns the exit code (kills the process if it overstays)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._thread.join(5)
        return code

    def kill_if_running(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


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
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(proj.root, ignore_errors=True)


def sshd_available() -> bool:
    return bool(shutil.which("sshd") or Path("/usr/sbin/sshd").exists())
