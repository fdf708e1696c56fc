"""Fixtures for the team tests: a real S3 API on 127.0.0.1 (moto's server) and team members that share it.

`s3_backend` starts moto's `ThreadedMotoServer` on a free port for one test, creates the bucket with
boto3, and stops the server when the test ends, failed or not. `team` gives two team members: two
project directories with their own PULUMI_HOME, the same s3:// backend URL and the same passphrase.
Every stack they leave is destroyed before the server stops, and their processes are killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, Watched, cleanup_project, make_env, stack_processes

REGION = "us-east-1"
BUCKET = "benchctl-team-state"
TEAM_PASSPHRASE = "correct horse battery staple"
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


@dataclass
class S3Backend:
    """A bucket on a local S3 server, and what a test needs to look inside it."""

    endpoint: str
    bucket: str
    client: Any

    def url(self, bucket: str | None = None) -> str:
        return (f"s3://{bucket or self.bucket}?region={REGION}&endpoint={self.endpoint}"
                f"&s3ForcePathStyle=true&disable_https=true")

    def objects(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def locks(self, stack: str) -> list[dict[str, Any]]:
        """The lock files Pulumi wrote for `stack` (pid, username, hostname, timestamp)."""
        keys = self.objects(f".pulumi/locks/organization/benchctl/{stack}/")
        return [json.loads(self.client.get_object(Bucket=self.bucket, Key=k)["Body"].read()) for k in keys]


@pytest.fixture
def s3_backend() -> Iterator[S3Backend]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        yield S3Backend(endpoint=endpoint, bucket=BUCKET, client=client)
    finally:
        server.stop()


def member(base: Path, **env: str) -> Project:
    """A team member: their own directory and PULUMI_HOME, the team's passphrase, (fake) AWS credentials."""
    base.mkdir(parents=True)
    proj = Project(root=base / "proj", env=make_env(base, PULUMI_CONFIG_PASSPHRASE=TEAM_PASSPHRASE, **FAKE_AWS, **env))
    proj.root.mkdir()
    return proj


@pytest.fixture
def team(tmp_path: Path, s3_backend: S3Backend) -> Iterator[tuple[Project, Project]]:
    alice, bob = member(tmp_path / "alice", BENCHCTL_OWNER="alice"), member(tmp_path / "bob", BENCHCTL_OWNER="bob")
    try:
        yield alice, bob
    finally:
        for proj in (alice, bob):  # while the S3 server still runs
            cleanup_project(proj)
            kill_plugins(proj)


# ------------------------------------------------------------------------------------------ a slow engine

GATED_ENGINE = '''
"""A model server that answers GET /v1/models only once the file --gate exists: a test decides when
`create` may finish, so it can act while the stack is locked, without guessing durations.
--ignore-term makes it ignore SIGTERM, so that stopping it (a `destroy`) takes the provider's grace period."""
import argparse, http.server, json, os, signal, time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--gate", required=True)
p.add_argument("--ignore-term", action="store_true")
a = p.parse_args()
if a.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while not os.path.exists(a.gate):
    time.sleep(0.05)


class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "gated", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Models).serve_forever()
'''


def gated_config(project: Project, bench_id: str, backend_url: str | None = None, *, ignore_term: bool = False) -> Path:
    """A local-provider config whose model server becomes ready when `project.root / "gate"` exists."""
    script = project.root / "gated_engine.py"
    script.write_text(GATED_ENGINE)
    backend = f'backend_url = "{backend_url}"\n' if backend_url else ""
    flags = " --ignore-term" if ignore_term else ""
    return project.write_config(textwrap.dedent(f"""\
        bench_id = "{bench_id}"
        provider = "local"
        {backend}
        [engine]
        command = "{sys.executable} {script} --port {{port}} --gate {project.root / 'gate'}{flags}"
        startup_timeout_s = 180
        """))


def wait_for(condition: Callable[[], Any], what: str, proc: Watched | None = None, timeout: float = 120) -> Any:
    """Poll until `condition()` is truthy; fail early (with its output) if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.proc.poll() is not None:
            pytest.fail(f"benchctl exited ({proc.finish()}) before {what}:\n{proc.output}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def kill_group(proc: Watched) -> None:
    """SIGKILL benchctl and everything in its process group (the pulumi CLI it runs), as a crash would."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.finish(timeout=30)


def pulumi_plugins(work_dir: Path) -> list[int]:
    """Pids of Pulumi plugin processes running in a project's workspace directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if b"pulumi" in argv and os.readlink(entry / "cwd") == str(work_dir) and state != "Z":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def leftovers(project: Project) -> list[int]:
    """Everything a project's stacks may have left running: their processes and orphaned Pulumi plugins."""
    return stack_processes(project.root) + pulumi_plugins(project.root / ".benchctl" / "pulumi")


def kill_plugins(project: Project) -> None:
    """Last resort after a failed test: the Pulumi plugins a killed update orphaned (cleanup_project
    only knows the stack's own processes)."""
    for pid in pulumi_plugins(project.root / ".benchctl" / "pulumi"):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
