"""`benchctl doctor`: the pinned Pulumi CLI, Python, extras, and credential sources by name only.

These tests need the Pulumi CLI that `make setup` builds into the cache: CI runs `make setup` first,
so they are never skipped; without it they fail and say to run `make setup`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from benchctl import doctor, pulumi_cli

PINNED = "3.276.0"
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIADOCTORTESTID",
    "AWS_SECRET_ACCESS_KEY": "doctor-fake-aws-secret-value",
    "SCW_SECRET_KEY": "doctor-fake-scaleway-secret",
    "HF_TOKEN": "hf_doctor_fake_token_value",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secret/path/doctor-sa.json",
}
FILE_SECRET = "aws-secret-from-a-credentials-file"


@pytest.fixture(scope="module")
def cache() -> Path:
    """The cache `make setup` filled, as benchctl sees it from this environment."""
    return pulumi_cli.cache_dir()


def doctor_env(home: Path, cache: Path, **extra: str) -> dict[str, str]:
    """A user's environment: a fresh HOME, no pulumi on PATH, no BENCHCTL_PULUMI, no ambient creds."""
    drop = ("AWS_", "SCW_", "GOOGLE_", "CLOUDSDK_", "HF_", "HUGGING_FACE_", "PULUMI_", "BENCHCTL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    path = [d for d in env.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "pulumi").exists()]
    env.update(HOME=str(home), PATH=os.pathsep.join(path), BENCHCTL_CACHE=str(cache), **extra)
    return env


def run_doctor(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "doctor", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> dict:
    home = tmp_path_factory.mktemp("home")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {FILE_SECRET}\n")
    env = doctor_env(home, cache, **SECRETS)
    proc = run_doctor(env, home, "--json")
    text = run_doctor(env, home)
    return {"json": json.loads(proc.stdout), "raw": proc.stdout + proc.stderr, "text": text.stdout + text.stderr,
            "cache": cache}


def test_pulumi_cli_is_the_pinned_one_from_the_cache(report: dict) -> None:
    p = report["json"]["pulumi"]
    expected = report["cache"] / "pulumi" / f"v{PINNED}" / "bin" / "pulumi"
    assert p["path"] is not None, "no Pulumi CLI found: run `make setup` (scripts/install-pulumi.sh)"
    assert Path(p["path"]) == expected  # found in the cache by itself, with no pulumi on PATH
    assert os.access(p["path"], os.X_OK)
    assert p["pinned"] == PINNED and p["ok"] is True
    if Path(p["path"]).is_symlink():  # install-pulumi.sh linked a newer pulumi it found on PATH
        assert tuple(map(int, p["version"].split(".")[:3])) >= tuple(map(int, PINNED.split(".")))
    else:
        assert p["version"] == PINNED
    assert p["dynamic_provider_plugin"] is True  # pulumi-resource-pulumi-python beside it
    assert p["python_sdk"] == metadata.version("pulumi")


def test_text_output_shows_the_pulumi_cli(report: dict) -> None:
    p = report["json"]["pulumi"]
    assert f"pulumi    v{p['version']} at {p['path']} (pinned v{PINNED})" in report["text"]
    assert "NOT FOUND" not in report["text"]


def test_python(report: dict) -> None:
    py = report["json"]["python"]
    assert py["version"] == platform.python_version()
    assert Path(py["executable"]).resolve() == Path(sys.executable).resolve()
    assert f"python    {platform.python_version()}" in report["text"]


def test_installed_extras(report: dict) -> None:
    extras = report["json"]["extras"]
    assert set(extras) == {"aws", "gcp", "scaleway"}
    for name, dist in doctor.EXTRAS.items():
        try:
            expected: str | None = metadata.version(dist)
        except metadata.PackageNotFoundError:
            expected = None
        assert extras[name] == expected
        assert (f"{name} {expected}" if expected else f"{name} (not installed: pip install 'benchctl[{name}]')") \
            in report["text"]


def test_credential_sources_by_name(report: dict) -> None:
    creds = report["json"]["credentials"]
    assert "AWS_ACCESS_KEY_ID" in creds["aws"] and "~/.aws/credentials" in creds["aws"]
    assert creds["gcp"] == ["GOOGLE_APPLICATION_CREDENTIALS"]
    assert creds["scaleway"] == ["SCW_SECRET_KEY"]
    assert creds["huggingface"] == ["HF_TOKEN"]
    aws_line = next(line for line in report["text"].splitlines() if line.startswith("creds     aws"))
    assert "AWS_ACCESS_KEY_ID" in aws_line and "~/.aws/credentials" in aws_line


def test_credential_values_never_appear(report: dict) -> None:
    for secret in (*SECRETS.values(), FILE_SECRET):
        assert secret not in report["raw"]
        assert secret not in report["text"]


def test_no_credentials_visible(tmp_path: Path, cache: Path) -> None:
    proc = run_doctor(doctor_env(tmp_path, cache), tmp_path, "--json")
    assert json.loads(proc.stdout)["credentials"] == {"aws": [], "gcp": [], "scaleway": [], "huggingface": []}


def test_missing_pulumi_says_how_to_get_it() -> None:
    text = doctor.render({
        "benchctl": "0", "python": {"version": "3.11.0", "executable": "/py"},
        "pulumi": {"path": None, "version": None, "pinned": PINNED, "ok": False, "dynamic_provider_plugin": False,
                   "python_sdk": None},
        "extras": {"aws": None, "gcp": None, "scaleway": None},
        "credentials": {"aws": [], "gcp": [], "scaleway": [], "huggingface": []}, "sshd": None,
    })
    assert f"NOT FOUND: run `make setup` (pinned v{PINNED})" in text
    assert "pip install 'benchctl[aws]'" in text
