"""`benchctl creds` for AWS against a real local moto server (STS GetCallerIdentity over HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchctl.cli import main
from benchctl.config import config_from_dict
from benchctl.creds import check

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY"
AWS_BLOCK = {"region": "us-east-1", "instance_type": "g4dn.xlarge", "launcher_instance_type": "t3.micro"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch, tmp_path) -> Path:
    """No ambient credentials, config files or instance metadata: only what each test sets."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def cfg(**block):
    return config_from_dict({"bench_id": "creds", "provider": "aws", "model": "m", "aws": {**AWS_BLOCK, **block}},
                            apply_env=False)


def test_access_keys_identity_from_sts(monkeypatch, moto_url):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    report = check(cfg(access_key="AKIAFAKEFAKEFAKE", secret_key=SECRET))
    assert report["ok"] and report["verified"] and not report["problems"]
    assert report["account"] == "123456789012"
    assert report["identity"].startswith("arn:aws:") and "123456789012" in report["identity"]
    assert report["region"] == "us-east-1"
    assert SECRET not in json.dumps(report)


def test_profile_from_the_shared_credentials_file(monkeypatch, moto_url, isolated_aws):
    (isolated_aws / "credentials").write_text(
        f"[bench]\naws_access_key_id = AKIAPROFILEFAKE\naws_secret_access_key = {SECRET}\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)   # the generic variable works too
    report = check(cfg(profile_name="bench"))
    assert report["ok"] and report["account"] == "123456789012"
    assert any("profile 'bench'" in n for n in report["notes"])


def test_missing_profile_is_explained(moto_url, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    report = check(cfg(profile_name="nope"))
    assert not report["ok"] and report["identity"] is None
    assert report["problems"] == ["AWS profile 'nope' does not exist"]
    assert "aws configure --profile nope" in report["fixes"][0]


def test_no_credentials_at_all_is_explained(moto_url, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    report = check(cfg())
    assert not report["ok"] and not report["verified"]
    assert report["problems"][0].startswith("no AWS credentials found")
    assert "AWS_ACCESS_KEY_ID" in report["fixes"][0]


def test_seed_placeholders_are_not_sent(moto_url, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    report = check(cfg(access_key="YOUR_AWS_ACCESS_KEY", secret_key="YOUR_AWS_SECRET_KEY"))
    assert not report["ok"] and "placeholders" in report["problems"][0]


def test_unreachable_sts_is_unverified_not_an_error(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
    report = check(cfg(access_key="AKIAFAKEFAKEFAKE", secret_key=SECRET))
    assert report["ok"] and not report["verified"] and report["identity"] is None
    assert any("could not be reached" in n for n in report["notes"])


def test_creds_command_exit_codes(monkeypatch, moto_url, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    good = tmp_path / "good.toml"
    good.write_text('bench_id = "creds"\nprovider = "aws"\nmodel = "m"\n[aws]\nregion = "us-east-1"\n'
                    'instance_type = "g4dn.xlarge"\nlauncher_instance_type = "t3.micro"\n')
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    result = CliRunner().invoke(main, ["creds", "-c", str(good), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["account"] == "123456789012" and SECRET not in result.output
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = CliRunner().invoke(main, ["creds", "-c", str(good)])
    assert result.exit_code == 1 and "no AWS credentials found" in result.output
