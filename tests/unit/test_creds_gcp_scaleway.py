"""`benchctl creds` for GCP (credentials files, no network) and Scaleway (against a local IAM stub)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from benchctl.config import config_from_dict
from benchctl.creds import check

GCP = {"region": "us-central1", "instance_type": "n1-standard-8-nvidia-tesla-t4", "launcher_instance_type": "e2-micro"}
SCW = {"region": "fr-par", "instance_type": "GPU-3070-S", "launcher_instance_type": "DEV1-S"}
ACCESS, SECRET = "SCWABCDEFGHIJKLMNOPQ", "11111111-aaaa-bbbb-cccc-222222222222"


def cfg(provider: str, **block):
    base = GCP if provider == "gcp" else SCW
    return config_from_dict({"bench_id": "creds", "provider": provider, "model": "m", provider: {**base, **block}},
                            apply_env=False)


@pytest.fixture(autouse=True)
def no_gcloud(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))


def test_gcp_service_account_file(tmp_path):
    key = tmp_path / "sa.json"
    key.write_text(json.dumps({"type": "service_account", "project_id": "from-file",
                               "client_email": "bench@from-file.iam.gserviceaccount.com",
                               "private_key": "-----BEGIN PRIVATE KEY-----\nFAKE\n-----END PRIVATE KEY-----\n"}))
    report = check(cfg("gcp", credentials_file=str(key)))
    assert report["ok"] and not report["verified"]
    assert report["identity"] == "bench@from-file.iam.gserviceaccount.com" and report["project"] == "from-file"
    assert "PRIVATE KEY" not in json.dumps(report)
    assert any("not verified" in n for n in report["notes"])


def test_gcp_application_default_credentials(tmp_path):
    adc = tmp_path / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir()
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "x", "refresh_token": "r"}))
    report = check(cfg("gcp", project="my-project"))
    assert report["ok"] and report["project"] == "my-project" and "gcloud auth" in report["identity"]


def test_gcp_nothing_configured_says_how_to_fix():
    report = check(cfg("gcp", access_key="YOUR_GCP_ACCESS_KEY", secret_key="YOUR_GCP_SECRET_KEY"))
    assert not report["ok"]
    assert report["problems"][0].startswith("no GCP credentials")
    assert "gcloud auth application-default login" in report["fixes"][0]
    assert any("set [gcp].project" in f for f in report["fixes"])
    assert any("ignored" in n for n in report["notes"])


class _IAM(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != f"/iam/v1alpha1/api-keys/{ACCESS}":
            self.send_response(404)
        elif self.headers.get("X-Auth-Token") != SECRET:
            self.send_response(401)
        else:
            body = json.dumps({"access_key": ACCESS, "application_id": "app-1", "default_project_id": "proj-1",
                               "expires_at": None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scw_api(monkeypatch) -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _IAM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("SCW_API_URL", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def test_scaleway_key_verified(scw_api):
    report = check(cfg("scaleway", access_key=ACCESS, secret_key=SECRET, project_id="proj-1"))
    assert report["ok"] and report["verified"]
    assert report["identity"] == "application app-1" and report["project"] == "proj-1"
    assert SECRET not in json.dumps(report)


def test_scaleway_key_without_project_suggests_its_default(scw_api):
    report = check(cfg("scaleway", access_key=ACCESS, secret_key=SECRET))
    assert not report["ok"] and report["verified"]
    assert any('set [scaleway].project_id = "proj-1"' in f for f in report["fixes"])


def test_scaleway_rejected_key(scw_api):
    report = check(cfg("scaleway", access_key=ACCESS, secret_key="00000000-0000-0000-0000-000000000000",
                       project_id="p"))
    assert not report["ok"] and report["problems"] == ["Scaleway rejected the API key (HTTP 401)"]


def test_scaleway_offline_is_unverified(monkeypatch):
    monkeypatch.setenv("SCW_API_URL", "http://127.0.0.1:9")
    report = check(cfg("scaleway", access_key=ACCESS, secret_key=SECRET, project_id="p"))
    assert report["ok"] and not report["verified"]
    assert any("unverified" in n for n in report["notes"])


def test_scaleway_missing_key_and_project():
    report = check(cfg("scaleway"))
    assert not report["ok"]
    assert report["problems"] == ["[scaleway].project_id is not set", "no Scaleway API key"]
    assert any("SCW_ACCESS_KEY" in f for f in report["fixes"])
