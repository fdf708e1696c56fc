"""A wrong or unreachable state backend: a clear error, the right exit code, and nothing created.

Against moto's S3 server on 127.0.0.1 and the real Pulumi CLI: a closed port, a missing bucket, a
malformed URL, a shared backend without the team's passphrase; and `benchctl doctor -c` saying which
backend and secrets provider are in use and whether the backend answers, credentials redacted.
"""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Project, make_env
from tests.e2e.conftest import FAKE_AWS, TEAM_PASSPHRASE, S3Backend

pytestmark = pytest.mark.e2e

# Tests list `s3_backend` before the project fixtures so the server outlives the projects' cleanup.


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def configure(project: Project, backend_url: str, bench_id: str = "backend-check") -> Path:
    return project.write_config(textwrap.dedent(f"""\
        bench_id = "{bench_id}"
        provider = "local"
        backend_url = "{backend_url}"
        """))


@pytest.fixture
def member(project: Project) -> Project:
    project.env.update(PULUMI_CONFIG_PASSPHRASE=TEAM_PASSPHRASE, **FAKE_AWS)
    return project


def assert_nothing_created(project: Project) -> None:
    state = project.root / ".benchctl"
    assert not (state / "state").exists(), "no local state for a shared backend"
    assert not (state / "passphrase").exists()
    assert not (state / "run").exists(), "no process started"


def test_unreachable_endpoint_fails_with_exit_1_and_creates_nothing(member: Project) -> None:
    url = (f"s3://benchctl-team-state?region=us-east-1&endpoint=http://127.0.0.1:{closed_port()}"
           "&s3ForcePathStyle=true&disable_https=true")
    configure(member, url)
    created = member.cli("create")
    assert created.returncode == 1
    assert "error: cannot reach the state backend s3://benchctl-team-state" in created.stderr
    assert "connection refused" in created.stderr and "Traceback" not in created.stderr
    assert_nothing_created(member)

    listed = member.cli("ls")
    assert listed.returncode == 1 and "cannot reach the state backend" in listed.stderr

    doctor = member.cli("doctor", "-c", "bench.toml", "--json")
    assert doctor.returncode == 1
    backend = json.loads(doctor.stdout)["backend"]
    assert (backend["kind"], backend["reachable"]) == ("s3", False)
    assert "connection refused" in backend["error"]
    Path(member.root / "bench.toml").unlink()  # nothing to clean up, and the backend would not answer


def test_missing_bucket_fails_with_exit_1_and_no_stack_appears(s3_backend: S3Backend, member: Project) -> None:
    configure(member, s3_backend.url("no-such-bucket"))
    created = member.cli("create")
    assert created.returncode == 1
    assert "cannot reach the state backend" in created.stderr and "NoSuchBucket" in created.stderr
    assert_nothing_created(member)
    assert [b["Name"] for b in s3_backend.client.list_buckets()["Buckets"]] == [s3_backend.bucket]
    assert s3_backend.objects() == []


@pytest.mark.parametrize("url, says", [
    ("s3://benchctl-team-state?endpoint_url=http://127.0.0.1:9", "unknown s3 parameter 'endpoint_url'"),
    ("s4://benchctl-team-state", "backend_url: expected file://, s3://, gs://, azblob://"),
    ("s3://Bad_Bucket", "not a valid bucket name"),
])
def test_malformed_backend_url_fails_with_exit_2_before_anything(member: Project, url: str, says: str) -> None:
    configure(member, url)
    for command in (["create"], ["ls"], ["doctor", "-c", "bench.toml"]):
        result = member.cli(*command)
        assert result.returncode == 2, (command, result.stderr)
        assert says in result.stderr
    assert not (member.root / ".benchctl").exists()


def test_shared_backend_needs_the_teams_passphrase(s3_backend: S3Backend, project: Project) -> None:
    project.env.update(FAKE_AWS)  # credentials, but no PULUMI_CONFIG_PASSPHRASE
    configure(project, s3_backend.url())
    created = project.cli("create")
    assert created.returncode == 2
    assert "set PULUMI_CONFIG_PASSPHRASE" in created.stderr and "awskms://" in created.stderr
    assert not (project.root / ".benchctl").exists()
    assert s3_backend.objects() == []


def test_doctor_shows_the_backend_and_secrets_in_use(s3_backend: S3Backend, member: Project) -> None:
    configure(member, s3_backend.url())
    doctor = member.cli("doctor", "-c", "bench.toml")
    assert doctor.returncode == 0, doctor.stderr
    assert f"backend   {s3_backend.url()} (s3): reachable, 0 stack(s)" in doctor.stdout
    assert "secrets   passphrase from PULUMI_CONFIG_PASSPHRASE" in doctor.stdout
    assert TEAM_PASSPHRASE not in doctor.stdout + doctor.stderr
    assert not (member.root / ".benchctl").exists(), "doctor only looks"


def test_doctor_never_prints_credentials_from_a_url(tmp_path: Path) -> None:
    proj = Project(root=tmp_path / "proj", env=make_env(tmp_path))
    proj.root.mkdir()
    configure(proj, f"https://alice:hunter2-secret@127.0.0.1:{closed_port()}")
    (proj.root / "bench.toml").write_text((proj.root / "bench.toml").read_text()
                                          + 'secrets_provider = "hashivault://bench?token=s.vault-secret"\n')
    doctor = proj.cli("doctor", "--json")  # ./bench.toml is used without -c
    assert doctor.returncode == 1
    everything = doctor.stdout + doctor.stderr
    assert "hunter2-secret" not in everything and "s.vault-secret" not in everything
    backend = json.loads(doctor.stdout)["backend"]
    assert backend["url"].startswith("https://***@127.0.0.1:") and backend["kind"] == "cloud"
    assert backend["secrets_provider"] == "hashivault://bench?token=***"
    assert backend["reachable"] is False


def test_ls_and_the_sweep_in_a_directory_without_state_create_nothing(project: Project) -> None:
    listed = project.cli("ls", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    swept = project.cli("destroy", "--expired")
    assert swept.returncode == 0 and "no expired stack" in swept.stdout
    assert list(project.root.iterdir()) == []
