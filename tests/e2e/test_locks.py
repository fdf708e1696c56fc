"""Locks and crash recovery with the real Pulumi engine and the local provider.

* Two runs on one bench_id at once (S3 backend, two team members): the second fails fast, naming the
  holder's user@host, pid and time; the first finishes; the state is intact.
* A benchctl SIGKILLed with its whole process group (the pulumi CLI too) in the middle of `create`
  or `destroy` leaves a lock whose holder is dead, pending operations, and orphaned processes. Then
  `benchctl cancel --yes` clears the lock, and `destroy` (or `create`) recovers on its own: clears
  the stale lock and what is pending, refreshes, finishes, and nothing is left running.

The model server here becomes ready only when the test creates a gate file, so the test decides
when an update may finish instead of guessing how long it takes.
"""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BENCHCTL, Project
from tests.e2e.conftest import S3Backend, gated_config, kill_group, kill_plugins, leftovers, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(project: Project) -> Iterator[Project]:
    """The shared `project` fixture, plus: no orphaned Pulumi plugin outlives a failed crash test."""
    yield project
    kill_plugins(project)


def ls(project: Project) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads(project.cli("ls", "--json", check=True).stdout)}


def run_dir(project: Project, bench_id: str) -> Path:
    return project.root / ".benchctl" / "run" / bench_id


def file_locks(project: Project, bench_id: str) -> list[dict[str, Any]]:
    lock_dir = project.root / ".benchctl" / "state" / ".pulumi" / "locks" / "organization" / "benchctl" / bench_id
    return [json.loads(p.read_text()) for p in lock_dir.glob("*.json")] if lock_dir.is_dir() else []


def pending(project: Project, bench_id: str) -> list[dict[str, Any]]:
    state = project.root / ".benchctl" / "state" / ".pulumi" / "stacks" / "benchctl" / f"{bench_id}.json"
    try:
        return json.loads(state.read_text())["checkpoint"]["latest"].get("pending_operations") or []
    except (OSError, ValueError, KeyError, TypeError):
        return []


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def model_servers(project: Project) -> list[int]:
    out = []
    for pid in leftovers(project):
        try:
            if b"gated_engine.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


def crash_mid_create(project: Project, bench_id: str, **config: Any) -> dict[str, Any]:
    """Start `create`, wait until its update holds the lock with the model server started, SIGKILL it all."""
    gated_config(project, bench_id, **config)
    proc = project.popen("create")
    try:
        lock = wait_for(lambda: (run_dir(project, bench_id) / "model-server.pid").exists()
                        and file_locks(project, bench_id), "the update to start the model server", proc)[0]
    finally:
        kill_group(proc)
    assert file_locks(project, bench_id) == [lock], "the killed update's lock should be left behind"
    assert pending(project, bench_id), "the killed update should leave a pending operation"
    return lock


def cli_without_tty(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCHCTL, *args], cwd=project.root, env=project.env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------ two at once


def test_second_run_on_a_locked_stack_fails_fast_naming_the_holder(team: tuple[Project, Project],
                                                                   s3_backend: S3Backend) -> None:
    alice, bob = team
    for who in team:
        gated_config(who, "team-locked", s3_backend.url())
    holder = alice.popen("create")
    try:
        wait_for(lambda: (run_dir(alice, "team-locked") / "model-server.pid").exists(),
                 "alice's update to start the model server", holder)
        lock = s3_backend.locks("team-locked")[0]
        assert (lock["username"], lock["hostname"]) == (getpass.getuser(), socket.gethostname())
        assert ppid(lock["pid"]) == holder.pid  # the lock is alice's: her benchctl's pulumi process

        second = bob.cli("create")
        assert second.returncode == 1
        who = f"{lock['username']}@{lock['hostname']} (pid {lock['pid']}) since "
        assert f"stack 'team-locked' is locked by {who}" in second.stderr
        assert "still running on this host" in second.stderr
        assert "Traceback" not in second.stderr
        assert not (bob.root / ".benchctl" / "run" / "team-locked").exists()  # bob started nothing

        row = ls(bob)["team-locked"]
        assert row["status"] == "updating"
        assert [(h["pid"], h["alive"]) for h in row["locks"]] == [(lock["pid"], True)]

        refused = bob.cli("cancel", "--yes")  # a live holder's lock is never cleared without --force
        assert refused.returncode == 1 and "still runs" in refused.stderr
        assert s3_backend.locks("team-locked") == [lock]
    finally:
        (alice.root / "gate").touch()
        code = holder.finish(timeout=240)
    assert code == 0, holder.output
    assert s3_backend.locks("team-locked") == []

    row = ls(bob)["team-locked"]
    assert (row["status"], row["pending_operations"], row["owner"]) == ("running", 0, "alice")
    assert len(model_servers(alice)) == 1
    destroyed = bob.cli("destroy")
    assert destroyed.returncode == 0, destroyed.stderr
    assert ls(alice)["team-locked"]["status"] == "destroyed"
    assert leftovers(alice) == []


# ------------------------------------------------------------------------------------------ after a crash


def test_cancel_shows_the_dead_holder_and_clears_its_lock(project: Project) -> None:
    lock = crash_mid_create(project, "lock-cancel")
    assert leftovers(project), "a SIGKILLed create leaves its processes behind"
    row = ls(project)["lock-cancel"]
    assert row["status"] == "failed" and row["pending_operations"] >= 1
    assert [(h["pid"], h["alive"]) for h in row["locks"]] == [(lock["pid"], False)]

    asked = cli_without_tty(project, "cancel")
    assert asked.returncode == 2 and "pass --yes" in asked.stderr
    assert f"(pid {lock['pid']})" in asked.stdout and "no longer running" in asked.stdout
    assert file_locks(project, "lock-cancel") == [lock]  # nothing cleared without confirmation

    cleared = project.cli("cancel", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert f"{lock['username']}@{lock['hostname']} (pid {lock['pid']})" in cleared.stdout
    assert "lock cleared" in cleared.stdout
    assert file_locks(project, "lock-cancel") == []
    again = project.cli("cancel", "--yes")
    assert again.returncode == 0 and "is not locked" in again.stdout

    destroyed = project.cli("destroy")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "cleared a pending operation left by a killed run: creating model-server" in destroyed.stderr
    assert leftovers(project) == []
    assert ls(project)["lock-cancel"]["status"] == "destroyed"


def test_destroy_recovers_by_itself_after_a_crash_in_create(project: Project) -> None:
    lock = crash_mid_create(project, "lock-auto")
    destroyed = project.cli("destroy")
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"cleared the lock of a benchctl that died: {lock['username']}@{lock['hostname']} " \
           f"(pid {lock['pid']})" in destroyed.stderr
    assert leftovers(project) == [], "the orphaned model server, sshd and provider plugin must be stopped"
    row = ls(project)["lock-auto"]
    assert (row["status"], row["resources"], row["locks"]) == ("destroyed", 0, [])


def test_create_recovers_by_itself_after_a_crash(project: Project) -> None:
    crash_mid_create(project, "lock-rerun")
    (project.root / "gate").touch()
    created = project.cli("create")
    assert created.returncode == 0, created.stderr
    assert "cleared the lock of a benchctl that died" in created.stderr
    assert "cleared a pending operation left by a killed run" in created.stderr
    assert len(model_servers(project)) == 1, "the orphan from the killed create must not survive beside the new one"
    row = ls(project)["lock-rerun"]
    assert (row["status"], row["pending_operations"], row["locks"]) == ("running", 0, [])


def test_destroy_recovers_after_a_crash_in_destroy(project: Project) -> None:
    gated_config(project, "lock-down", ignore_term=True)  # stopping the server takes the grace period
    (project.root / "gate").touch()
    project.cli("create", check=True)
    proc = project.popen("destroy")
    try:
        wait_for(lambda: any(p.get("type") == "deleting" for p in pending(project, "lock-down")),
                 "destroy to start deleting", proc)
    finally:
        kill_group(proc)
    assert file_locks(project, "lock-down"), "the killed destroy's lock should be left behind"

    destroyed = project.cli("destroy")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "cleared the lock of a benchctl that died" in destroyed.stderr
    assert leftovers(project) == []
    assert ls(project)["lock-down"]["status"] == "destroyed"


def test_cancel_without_a_lock_or_a_stack_succeeds(project: Project) -> None:
    gated_config(project, "lock-none")
    missing = project.cli("cancel", "--yes")
    assert missing.returncode == 0 and "does not exist" in missing.stdout
