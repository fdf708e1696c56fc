"""Backend URLs, secrets providers and the errors a backend gives: checked before any Pulumi command runs.

Pure functions, no CLI: a typo in backend_url must be a one-line error naming the problem, a URL with
credentials must never be printed as is, and Pulumi's lock error must be read for who holds the lock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from benchctl.backends import (
    backend_error,
    check_secrets_provider,
    parse_backend_url,
    redact_url,
    resolve_backend,
)
from benchctl.config import config_from_dict
from benchctl.errors import ConfigError
from benchctl.locks import LockHolder, parse_lock_error, stale

PROJECT = Path("/srv/bench")
MINIO = "s3://state?region=us-east-1&endpoint=http://127.0.0.1:9000&s3ForcePathStyle=true&disable_https=true"


@pytest.mark.parametrize("url, kind", [
    ("file:///var/lib/benchctl", "file"),
    ("s3://team-state", "s3"),
    ("s3://team-state/benchctl?region=eu-west-3&profile=bench", "s3"),
    (MINIO, "s3"),
    ("s3://state?endpoint=minio:9000&disableSSL=true&use_path_style=true", "s3"),
    ("gs://team-state", "gs"),
    ("azblob://benchctl-state", "azblob"),
    ("https://api.pulumi.com", "cloud"),
    ("https://pulumi.example.com", "cloud"),
])
def test_supported_backends_are_accepted_unchanged(url: str, kind: str) -> None:
    assert parse_backend_url(url, PROJECT) == (kind, url)


def test_relative_and_home_file_paths_become_absolute() -> None:
    assert parse_backend_url("file://state", PROJECT) == ("file", "file:///srv/bench/state")
    assert parse_backend_url("file://~/state", PROJECT) == ("file", f"file://{Path.home() / 'state'}")


@pytest.mark.parametrize("url, says", [
    ("s4://team-state", "expected file://, s3://, gs://, azblob:// or https://api.pulumi.com"),
    ("team-state", "expected file://"),
    ("file://", "file:// needs a directory"),
    ("s3://Team_State", "not a valid bucket name"),
    ("s3://ab", "not a valid bucket name"),
    ("azblob://", "not a valid container name"),
    ("s3://state?endpoint_url=http://127.0.0.1:9000", "unknown s3 parameter 'endpoint_url'"),
    ("s3://state?s3ForcePathStyle=yes", "s3ForcePathStyle='yes' must be true or false"),
    ("s3://state?endpoint=", "endpoint= is empty"),
    ("https://", "needs a host"),
])
def test_malformed_backend_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="backend_url") as err:
        parse_backend_url(url, PROJECT, "bench.toml")
    assert says in str(err.value)
    assert str(err.value).startswith("bench.toml: ")
    assert ConfigError.exit_code == 2


@pytest.mark.parametrize("url, secret", [
    ("https://alice:hunter2@pulumi.example.com", "hunter2"),
    ("postgres://bench:pa55word@db:5432/state", "pa55word"),
    ("azblob://state?sas_token=sv%3D2024%26sig%3Dabc", "sv%3D2024"),
    ("s3://state?endpoint=http://minio:9000&aws_secret_access_key=topsecret", "topsecret"),
    ("hashivault://benchctl?token=s.vaulttoken", "s.vaulttoken"),
])
def test_redaction_hides_credentials(url: str, secret: str) -> None:
    shown = redact_url(url)
    assert secret not in shown
    assert "***" in shown


def test_redaction_keeps_what_is_not_secret() -> None:
    assert redact_url(MINIO) == MINIO
    assert redact_url("awskms://alias/benchctl?region=us-east-1") == "awskms://alias/benchctl?region=us-east-1"


def test_malformed_backend_url_error_does_not_leak_the_password() -> None:
    with pytest.raises(ConfigError) as err:
        parse_backend_url("ftp://alice:hunter2@host/state", PROJECT)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("provider", [
    "passphrase", "awskms://alias/benchctl?region=eu-west-3",
    "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
    "azurekeyvault://team.vault.azure.net/keys/benchctl", "hashivault://benchctl",
])
def test_secrets_providers_accepted(provider: str) -> None:
    assert check_secrets_provider(provider) == provider


@pytest.mark.parametrize("provider", ["kms://x", "awskms://", "gcpkms:///", "passphrase123", "default"])
def test_bad_secrets_providers_refused(provider: str) -> None:
    with pytest.raises(ConfigError, match="secrets_provider: expected 'passphrase' or a key URL"):
        check_secrets_provider(provider)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _cfg(tmp_path: Path, **keys: str):  # type: ignore[no-untyped-def]
    return config_from_dict({"bench_id": "team", **keys}, source=tmp_path / "bench.toml")


def test_shared_backend_with_a_generated_passphrase_is_refused_and_creates_nothing(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="shared, so its secrets need a key everybody has"):
        resolve_backend(_cfg(tmp_path, backend_url=MINIO))
    assert list(tmp_path.iterdir()) == []  # no passphrase file, no state directory


def test_shared_backend_with_the_team_passphrase_or_a_kms_key(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    kms = resolve_backend(_cfg(tmp_path, backend_url=MINIO, secrets_provider="awskms://alias/team"))
    assert (kms.kind, kms.secrets_provider, kms.stack_secrets_provider) == ("s3", "awskms://alias/team",
                                                                            "awskms://alias/team")
    clean_env.setenv("PULUMI_CONFIG_PASSPHRASE", "team secret")
    shared = resolve_backend(_cfg(tmp_path, backend_url=MINIO))
    assert shared.secrets_provider == "passphrase" and "PULUMI_CONFIG_PASSPHRASE_FILE" not in shared.env
    assert shared.env["PULUMI_BACKEND_URL"] == MINIO
    assert list(tmp_path.iterdir()) == []


def test_default_is_a_file_backend_with_a_private_generated_passphrase(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    backend = resolve_backend(_cfg(tmp_path))
    assert backend.url == f"file://{tmp_path / '.benchctl' / 'state'}" and backend.kind == "file"
    passphrase = Path(backend.env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    assert passphrase == tmp_path / ".benchctl" / "passphrase"
    assert oct(passphrase.stat().st_mode & 0o777) == "0o600" and len(passphrase.read_text()) >= 32
    assert resolve_backend(_cfg(tmp_path)).env == backend.env  # generated once, then reused


def test_environment_backend_url_is_used_and_checked(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PULUMI_BACKEND_URL", "gs://Bad_Bucket")
    with pytest.raises(ConfigError, match="not a valid bucket name"):
        resolve_backend(_cfg(tmp_path))


def test_pulumi_cloud_defaults_to_its_own_secrets(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    backend = resolve_backend(_cfg(tmp_path, backend_url="https://api.pulumi.com"))
    assert backend.secrets_provider == "service" and backend.stack_secrets_provider is None
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in backend.env


# ------------------------------------------------------------------------------------------ errors from Pulumi

NO_BUCKET = (
    "code: 255\n stdout: \n stderr: error: error listing stacks: could not list bucket: blob (code=NotFound): "
    "operation error S3: ListObjectsV2, https response error StatusCode: 404, RequestID: X, HostID: Y, "
    "NoSuchBucket: The specified bucket does not exist\n"
)
REFUSED = (
    "SDK 2026/12/03 16:48:40 WARN Response has no supported checksum.\n"
    "error: read \".pulumi/meta.yaml\": blob (key \".pulumi/meta.yaml\") (code=Unknown): operation error S3: "
    "GetObject, exceeded maximum number of attempts, 3, https response error StatusCode: 0, request send failed, "
    "Get \"http://127.0.0.1:1/state/.pulumi/meta.yaml?x-id=GetObject\": dial tcp 127.0.0.1:1: connect: "
    "connection refused\n"
)


def test_unreachable_backend_errors_are_reduced_to_their_cause() -> None:
    assert backend_error(NO_BUCKET) == "NoSuchBucket: The specified bucket does not exist"
    assert backend_error(REFUSED) == "dial tcp 127.0.0.1:1: connect: connection refused"


def test_a_resource_error_is_not_mistaken_for_the_backend() -> None:
    text = ("error: update failed\n  pulumi-python:dynamic:Resource (model-server):\n"
            "    error: Exception: process exited during start-up: dial tcp 127.0.0.1:8000: connection refused")
    assert backend_error(text) is None


# Pulumi 3.276's DIY lock error, as `pulumi up` prints it when another process holds the lock.
LOCKED = (
    "error: the stack is currently locked by 2 lock(s). Either wait for the other process(es) to end or delete "
    "the lock file with `pulumi cancel`.\n"
    "  s3://state/.pulumi/locks/organization/benchctl/team/3f1c.json: created by alice@gpu-box (pid 4242) "
    "at 2026-12-03T16:00:00Z\n"
    "  s3://state/.pulumi/locks/organization/benchctl/team/9a0b.json: created by bob@laptop.local (pid 17) "
    "at 2026-12-03T17:30:05+01:00\n"
)


def test_every_lock_holder_is_read_from_pulumis_error() -> None:
    holders = parse_lock_error(LOCKED)
    assert [(h.user, h.host, h.pid, h.since) for h in holders] == [
        ("alice", "gpu-box", 4242, "2026-12-03T16:00:00Z"),
        ("bob", "laptop.local", 17, "2026-12-03T17:30:05+01:00"),
    ]
    assert holders[0].where == "s3://state/.pulumi/locks/organization/benchctl/team/3f1c.json"
    assert parse_lock_error("[409] Conflict: Another update is currently in progress.") == []


def test_lock_message_names_holder_time_and_what_to_do() -> None:
    from benchctl.automation import lock_message

    text = lock_message("team", LOCKED)
    assert "alice@gpu-box (pid 4242) since 2026-12-03T16:00:00Z" in text
    assert "bob@laptop.local (pid 17)" in text
    assert "benchctl cancel" in text
    assert "locked by another update" in lock_message("team", "[409] Conflict: Another update is in progress")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_liveness_is_known_only_on_this_host() -> None:
    host = socket.gethostname()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    me = LockHolder("me", host, os.getpid(), now)
    dead = LockHolder("me", host, _dead_pid(), "2026-01-01T00:00:00Z")
    elsewhere = LockHolder("bob", "another-host.invalid", os.getpid(), "2026-01-01T00:00:00Z")
    assert me.alive() is True and dead.alive() is False and elsewhere.alive() is None
    assert "no longer running" in dead.state() and "cannot tell" in elsewhere.state()
    assert stale([dead]) and not stale([dead, elsewhere]) and not stale([me]) and not stale([])


def test_a_reused_pid_is_not_the_lock_holder() -> None:
    # This process started long after the lock was taken: its pid was reused, the holder is gone.
    reused = LockHolder("me", socket.gethostname(), os.getpid(), "2001-01-01T00:00:00.123456789Z")
    assert reused.alive() is False
