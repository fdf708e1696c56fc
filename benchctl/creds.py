"""`benchctl creds`: which identity, account/project and region `create` would use, and how to fix what is missing.

`check(cfg)` never raises for a missing or rejected credential: it returns
{"provider", "ok", "verified", "identity", "account", "project", "region", "problems", "fixes", "notes"}.
`ok` means nothing is known to be wrong; `verified` means the cloud itself confirmed the identity.
- AWS: STS GetCallerIdentity with the profile, the keys or the default chain (verified). The endpoint
  follows AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, so a test can point it at a local moto server.
- GCP: reads the credentials file (or the application-default credentials file) without a network
  call: who it names and which project; not verified.
- Scaleway: looks the access key up in IAM (GET /iam/v1alpha1/api-keys/{access_key}) at SCW_API_URL
  or https://api.scaleway.com; when that cannot be reached, says so and reports the check as unverified.

Secret values are never part of the result.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import SecretStr

    from benchctl.config import BenchConfig

SCALEWAY_API = "https://api.scaleway.com"
TIMEOUT_S = 5.0


def _report(provider: str, region: str | None) -> dict[str, Any]:
    return {"provider": provider, "ok": False, "verified": False, "identity": None, "account": None,
            "project": None, "region": region, "problems": [], "fixes": [], "notes": []}


def _placeholder(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value().upper().startswith("YOUR_")


def check(cfg: BenchConfig) -> dict[str, Any]:
    """Check the credentials of `cfg.provider`; see the module docstring for the result."""
    if cfg.provider == "aws":
        report = _aws(cfg)
    elif cfg.provider == "gcp":
        report = _gcp(cfg)
    elif cfg.provider == "scaleway":
        report = _scaleway(cfg)
    else:
        report = _report(cfg.provider, None)
        report["notes"].append("the local provider needs no cloud credentials")
    report["ok"] = not report["problems"]
    return report


# ------------------------------------------------------------------------------------------- AWS


def _aws(cfg: BenchConfig) -> dict[str, Any]:
    aws = cfg.aws
    assert aws is not None
    report = _report("aws", aws.region)
    try:
        import boto3
        from botocore import exceptions as bex
        from botocore.config import Config
    except ImportError:
        report["problems"].append("boto3 is not installed")
        report["fixes"].append("pip install 'benchctl[aws]'")
        return report
    if _placeholder(aws.access_key) or _placeholder(aws.secret_key):
        report["problems"].append("[aws].access_key/secret_key are the seed's placeholders")
        report["fixes"].append("export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (they override the file), "
                               "or remove the keys and set [aws].profile_name")
        return report
    session_args: dict[str, Any] = {"region_name": aws.region}
    if aws.access_key is not None and aws.secret_key is not None:
        session_args.update(aws_access_key_id=aws.access_key.get_secret_value(),
                            aws_secret_access_key=aws.secret_key.get_secret_value())
        source = "access keys ([aws].access_key or AWS_ACCESS_KEY_ID)"
    elif aws.profile_name:
        session_args["profile_name"] = aws.profile_name
        source = f"profile {aws.profile_name!r}"
    else:
        source = "the default credential chain (environment, ~/.aws, SSO, instance role)"
    report["notes"].append(f"credentials from {source}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        report["notes"].append(f"STS endpoint: {endpoint}")
    login = f"aws sso login --profile {aws.profile_name}" if aws.profile_name else "aws sso login"
    try:
        session = boto3.Session(**session_args)
        sts = session.client("sts", endpoint_url=endpoint, config=Config(
            connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 1}))
        identity = sts.get_caller_identity()
    except bex.ProfileNotFound:
        report["problems"].append(f"AWS profile {aws.profile_name!r} does not exist")
        report["fixes"].append(f"aws configure --profile {aws.profile_name} (or aws configure sso), "
                               "or set [aws].profile_name to a profile in ~/.aws/config")
    except bex.NoCredentialsError:
        report["problems"].append(f"no AWS credentials found in {source}")
        report["fixes"].append("set [aws].profile_name, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    except (bex.SSOError, bex.TokenRetrievalError) as exc:
        report["problems"].append(f"the SSO session cannot be used: {type(exc).__name__}")
        report["fixes"].append(login)
    except bex.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        report["problems"].append(f"AWS rejected the credentials ({code})")
        report["fixes"].append("the keys are wrong, disabled or expired: create new ones in IAM, or " + login)
    except (bex.ConnectionError, bex.ReadTimeoutError):
        report["notes"].append("STS could not be reached (offline?): credentials are unverified")
    except bex.BotoCoreError as exc:
        report["problems"].append(f"AWS credentials could not be used: {type(exc).__name__}")
        report["fixes"].append("run `aws sts get-caller-identity` with the same settings to see why")
    else:
        report.update(verified=True, identity=identity.get("Arn"), account=identity.get("Account"))
    return report


# ------------------------------------------------------------------------------------------- GCP


def _adc_path() -> Path:
    if os.environ.get("CLOUDSDK_CONFIG"):
        base = Path(os.environ["CLOUDSDK_CONFIG"])
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", "~")) / "gcloud"
    else:
        base = Path("~/.config/gcloud")
    return (base / "application_default_credentials.json").expanduser()


def _gcp(cfg: BenchConfig) -> dict[str, Any]:
    gcp = cfg.gcp
    assert gcp is not None
    report = _report("gcp", gcp.region)
    report["notes"].append(f"zone {gcp.effective_zone()}")
    if gcp.access_key or gcp.secret_key:
        report["notes"].append("[gcp].access_key/secret_key are ignored: GCP uses a credentials file")
    login_fix = ("set [gcp].credentials_file to a service-account JSON key (or GOOGLE_APPLICATION_CREDENTIALS), "
                 "or run `gcloud auth application-default login`")
    path = Path(gcp.credentials_file).expanduser() if gcp.credentials_file else _adc_path()
    origin = "[gcp].credentials_file" if gcp.credentials_file else "application-default credentials"
    data: dict[str, Any] = {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        report["problems"].append(f"no GCP credentials: {origin} {path} does not exist")
        report["fixes"].append(login_fix)
    except (OSError, ValueError) as exc:
        report["problems"].append(f"{origin} {path} is not a readable JSON credentials file ({type(exc).__name__})")
        report["fixes"].append(login_fix)
    kind = data.get("type")
    if kind == "service_account":
        report["identity"] = data.get("client_email")
    elif kind == "authorized_user":
        report["identity"] = "user credentials from `gcloud auth application-default login`"
    elif kind in ("external_account", "impersonated_service_account"):
        url = data.get("service_account_impersonation_url", "")
        report["identity"] = url.rsplit("/", 1)[-1].split(":")[0] or f"{kind} credentials"
    elif data:
        report["problems"].append(f"{path}: unsupported credentials type {kind!r}")
        report["fixes"].append(login_fix)
    if data:
        report["notes"].append(f"credentials from {origin} {path}")
    report["project"] = gcp.project or data.get("project_id") or data.get("quota_project_id")
    report["account"] = report["project"]
    if not report["project"]:
        report["problems"].append("no GCP project: neither [gcp].project nor the credentials name one")
        report["fixes"].append("set [gcp].project (or GOOGLE_CLOUD_PROJECT)")
    if not report["problems"]:
        report["notes"].append("not verified with Google (no network call): "
                               "`gcloud auth application-default print-access-token` proves the credentials work")
    return report


# -------------------------------------------------------------------------------------- Scaleway


def _scaleway(cfg: BenchConfig) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    scw = cfg.scaleway
    assert scw is not None
    report = _report("scaleway", scw.region)
    report["project"] = scw.project_id
    if not scw.project_id:
        report["problems"].append("[scaleway].project_id is not set")
        report["fixes"].append("set [scaleway].project_id (or SCW_DEFAULT_PROJECT_ID): console > Project > Settings")
    if scw.access_key is None or scw.secret_key is None:
        report["problems"].append("no Scaleway API key")
        report["fixes"].append("export SCW_ACCESS_KEY and SCW_SECRET_KEY (console > IAM > API keys)")
        return report
    if _placeholder(scw.access_key) or _placeholder(scw.secret_key):
        report["problems"].append("[scaleway].access_key/secret_key are the seed's placeholders")
        report["fixes"].append("export SCW_ACCESS_KEY and SCW_SECRET_KEY (they override the file)")
        return report
    access = scw.access_key.get_secret_value()
    api = os.environ.get("SCW_API_URL", SCALEWAY_API).rstrip("/")
    request = urllib.request.Request(f"{api}/iam/v1alpha1/api-keys/{access}",
                                     headers={"X-Auth-Token": scw.secret_key.get_secret_value()})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            key = json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:
        if exc.code == 403:
            report.update(verified=True, identity=f"API key {access}")
            report["notes"].append("the key is valid but may not read IAM (no IAMReadOnly): identity details unknown")
        else:
            report["problems"].append(f"Scaleway rejected the API key (HTTP {exc.code})")
            report["fixes"].append("check SCW_ACCESS_KEY/SCW_SECRET_KEY, or create a new key in console > IAM > API keys")
        return report
    except (urllib.error.URLError, TimeoutError, OSError, ValueError):
        report["notes"].append(f"{api} could not be reached (offline?): the API key is unverified")
        return report
    principal = f"application {key['application_id']}" if key.get("application_id") else f"user {key.get('user_id')}"
    report.update(verified=True, identity=principal)
    if not scw.project_id and key.get("default_project_id"):
        report["fixes"].append(f"the API key's default project is {key['default_project_id']}: "
                               f"set [scaleway].project_id = \"{key['default_project_id']}\" if that is the one")
    if key.get("expires_at"):
        report["notes"].append(f"the API key expires at {key['expires_at']}")
    return report
