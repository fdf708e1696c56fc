"""Test helper: the simulator as a real subprocess on 127.0.0.1, port 0, always stopped afterwards.

A subprocess (not a thread) so the simulator and the client do not share a GIL: the timing tests
hold the client's numbers against the server's truth log, and a shared interpreter would blur both.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class SimProc:
    """One `python -m benchctl.simulator` process; `url`, `truth()` and `stop()`."""

    def __init__(self, workdir: Path, *args: str, truth: bool = True) -> None:
        self.truth_path = workdir / f"truth-{time.monotonic_ns()}.jsonl" if truth else None
        cmd = [sys.executable, "-m", "benchctl.simulator", "--host", "127.0.0.1", "--port", "0", *args]
        if self.truth_path is not None:
            cmd += ["--truth-log", str(self.truth_path)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = line.split()[-1]

    def truth(self, ids: set[str] | None = None, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """Truth-log entries by request id; waits (the log is flushed every 0.1 s) until `ids` are all in."""
        assert self.truth_path is not None
        deadline = time.monotonic() + timeout
        while True:
            entries: dict[str, dict[str, Any]] = {}
            if self.truth_path.exists():
                for line in self.truth_path.read_text().splitlines():
                    if line.strip():
                        e = json.loads(line)
                        entries[e["id"]] = e
            if ids is None or ids <= set(entries) or time.monotonic() > deadline:
                return entries
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class SimFactory:
    """Starts simulators for one test and stops every one of them, pass or fail."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[SimProc] = []

    def __call__(self, *args: str, truth: bool = True) -> SimProc:
        p = SimProc(self.workdir, *args, truth=truth)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            p.stop()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
