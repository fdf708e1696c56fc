"""Two team members, one S3 backend (moto's server on 127.0.0.1), the real Pulumi engine, the local provider.

Alice and Bob have separate directories and Pulumi homes; they share the backend URL and the passphrase,
as a team shares a bucket and a secret. Alice runs a benchmark and keeps the stack (`run --keep`); Bob
sees it in `benchctl ls`, reads its results and destroys it; Alice then sees it destroyed and her processes are gone. Then the sweep:
`benchctl destroy --expired`, run from a directory with no bench.toml (as cron would), destroys what
is past its expiry and nothing else.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.e2e.conftest import S3Backend, leftovers, member, wait_for

pytestmark = pytest.mark.e2e


def config(project: Project, bench_id: str, backend_url: str, lifetime: str = "4h") -> Path:
    return project.write_config(textwrap.dedent(f"""\
        bench_id = "{bench_id}"
        provider = "local"
        inference_engine = "simulator"
        model = "team-model"
        backend_url = "{backend_url}"
        max_lifetime = "{lifetime}"

        [simulator]
        ttft_base_ms = 2
        itl_ms = 1

        [benchmark]
        concurrency = 1
        requests = 4
        warmup = 0
        input_tokens = 16
        output_tokens = 8
        """))


def ls(project: Project, *args: str) -> dict[str, dict]:
    listed = project.cli("ls", "--json", *args, check=True)
    return {s["name"]: s for s in json.loads(listed.stdout)}


def test_two_members_share_one_stack(team: tuple[Project, Project], s3_backend: S3Backend) -> None:
    alice, bob = team
    for who in team:
        config(who, "team-shared", s3_backend.url())

    started = alice.cli("run", "--keep")
    assert started.returncode == 0, started.stdout + started.stderr
    assert leftovers(alice), "alice's stack should be running"
    assert any(k.startswith(".pulumi/stacks/benchctl/team-shared") for k in s3_backend.objects()), "state not in S3"
    assert not (alice.root / ".benchctl" / "state").exists()  # nothing kept locally for a shared backend

    row = ls(bob)["team-shared"]
    assert (row["status"], row["owner"], row["provider"]) == ("running", "alice", "local")
    assert row["gpu_instance_type"] == "local" and row["resources"] >= 1 and row["expired"] is False
    assert row["locks"] == []
    table = bob.cli("ls", check=True).stdout
    assert "team-shared" in table and "alice" in table and "running" in table

    results = bob.cli("results", "--json")
    assert results.returncode == 0, results.stderr
    head = json.loads(results.stdout)["headline"]
    assert head["points"] and head["points"][0]["completed"] == 4
    assert ls(bob)["team-shared"]["headline"].startswith(f"{head['run_id']}: c=1 ")

    destroyed = bob.cli("destroy")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr

    row = ls(alice)["team-shared"]
    assert row["status"] == "destroyed" and row["resources"] == 0
    assert row["owner"] == "alice"  # the tombstone still says whose it was
    assert leftovers(alice) == [], "bob's destroy must stop alice's processes"


def test_sweep_destroys_only_expired_stacks_without_a_config(tmp_path: Path, s3_backend: S3Backend,
                                                              team: tuple[Project, Project]) -> None:
    alice, bob = team
    config(alice, "team-expiring", s3_backend.url(), lifetime="1s")
    config(bob, "team-fresh", s3_backend.url(), lifetime="4h")
    for who in team:
        who.cli("create", check=True)

    expired = wait_for(lambda: ls(bob, "--expired"), "the 1s stack to expire")
    assert list(expired) == ["team-expiring"]
    assert expired["team-expiring"]["expired"] is True

    cron = member(tmp_path / "cron", PULUMI_BACKEND_URL=s3_backend.url())  # no bench.toml at all
    assert not (cron.root / "bench.toml").exists()
    swept = cron.cli("destroy", "--expired", "--json")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    reports = json.loads(swept.stdout)
    assert [(r["stack"], r["destroyed"], r["error"]) for r in reports] == [("team-expiring", True, None)]

    rows = ls(cron)
    assert rows["team-expiring"]["status"] == "destroyed"
    assert rows["team-fresh"]["status"] == "running"
    assert leftovers(alice) == [] and leftovers(bob)
    assert ls(cron, "--expired") == {}
    again = cron.cli("destroy", "--expired", "--json", check=True)  # idempotent: nothing left to sweep
    assert json.loads(again.stdout) == []
