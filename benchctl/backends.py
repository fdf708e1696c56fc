"""Where the state lives: the backend URL, the secrets provider, and what the Pulumi CLI needs to reach them.

The state *is* the team's inventory: every run is a stack in one backend that everybody shares.
Supported backends are Pulumi's own: `file://` (the default, under the project directory), `s3://`
(AWS or any S3-compatible store through `endpoint=`), `gs://`, `azblob://` and Pulumi Cloud
(`https://api.pulumi.com` or a self-hosted service). Secrets providers: a passphrase (the default)
or a KMS key: `awskms://`, `gcpkms://`, `azurekeyvault://`, `hashivault://`.

Everything here is checked before the first Pulumi command runs, so a typo in a URL is a clear
error (exit 2) and creates nothing. Nothing here imports Pulumi or a cloud SDK.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from benchctl.errors import ConfigError

if TYPE_CHECKING:
    from benchctl.config import BenchConfig

STATE_DIR = ".benchctl"
BACKEND_SCHEMES = {"file": "file", "s3": "s3", "gs": "gs", "azblob": "azblob", "https": "cloud", "http": "cloud"}
SECRETS_SCHEMES = ("awskms://", "gcpkms://", "azurekeyvault://", "hashivault://")

# The query parameters Pulumi 3.276 (gocloud.dev 0.46, AWS SDK v2) accepts on s3:// URLs; any other
# one makes every Pulumi command fail with "unknown query parameter", so it is caught here instead.
S3_PARAMS = {
    "region", "endpoint", "profile", "awssdk", "role", "anonymous", "dualstack", "fips", "hostname_immutable",
    "rate_limiter_capacity", "request_checksum_calculation", "response_checksum_validation",
    "ssetype", "kmskeyid", "accelerate", "use_path_style", "s3ForcePathStyle", "disable_https", "disableSSL",
}
S3_BOOL_PARAMS = {"anonymous", "dualstack", "fips", "hostname_immutable", "accelerate", "use_path_style",
                  "s3ForcePathStyle", "disable_https", "disableSSL"}
_GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,221}[a-z0-9]$")
_SECRET_PARAM = re.compile(r"secret|token|passw|sig|credential|access_?key", re.I)


@dataclass(frozen=True)
class Backend:
    url: str
    kind: str                 # file, s3, gs, azblob, cloud
    secrets_provider: str     # "passphrase", "service" (Pulumi Cloud's own) or a KMS URL
    env: dict[str, str]       # what the Pulumi CLI needs to reach it

    def describe(self) -> dict[str, str]:
        return {"url": redact_url(self.url), "kind": self.kind, "secrets_provider": redact_url(self.secrets_provider)}

    @property
    def stack_secrets_provider(self) -> str | None:
        """What `pulumi stack init --secrets-provider` gets: None where the backend's default is meant."""
        if self.secrets_provider == "service" or (self.secrets_provider == "passphrase" and self.kind != "cloud"):
            return None
        return self.secrets_provider


def redact_url(url: str) -> str:
    """The URL without credentials: `user:password@` and secret-looking query values become `***`."""
    url = re.sub(r"//[^/@?#]+@", "//***@", url)
    return re.sub(r"([?&])([^=&#]+)=([^&#]*)",
                  lambda m: f"{m[1]}{m[2]}=***" if _SECRET_PARAM.search(m[2]) else m[0], url)


def parse_backend_url(url: str, project_dir: Path, where: str = "config") -> tuple[str, str]:
    """Check a backend URL; returns (kind, normalized URL). Raises ConfigError saying what is wrong.

    A relative or `~` file path is made absolute (relative to the project directory), so every
    command of a project finds the same state wherever it is run from.
    """
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    kind = BACKEND_SCHEMES.get(scheme) if sep else None
    if kind is None:
        raise ConfigError(f"{where}: backend_url: expected file://, s3://, gs://, azblob:// or "
                          f"https://api.pulumi.com, got {shown!r}")
    if kind == "file":
        if not rest:
            raise ConfigError(f"{where}: backend_url: file:// needs a directory, e.g. file://~/.benchctl-state")
        path = Path(rest.split("?", 1)[0]).expanduser()
        return kind, f"file://{path if path.is_absolute() else (project_dir / path).resolve()}"
    parts = urlsplit(url)
    if kind == "cloud":
        if not parts.hostname:
            raise ConfigError(f"{where}: backend_url: a Pulumi Cloud URL needs a host, e.g. https://api.pulumi.com")
        return kind, url
    name = parts.netloc
    what = "container" if kind == "azblob" else "bucket"
    if not _BUCKET.match(name):
        raise ConfigError(f"{where}: backend_url: {name!r} is not a valid {what} name in {shown!r} "
                          f"(3-63 lowercase letters, digits, '.', '-')")
    if kind == "s3":
        _check_s3_query(parts.query, shown, where)
    return kind, url


def _check_s3_query(query: str, shown: str, where: str) -> None:
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in S3_PARAMS:
            raise ConfigError(f"{where}: backend_url: unknown s3 parameter {key!r} in {shown!r}; expected one of "
                              f"{', '.join(sorted(S3_PARAMS, key=str.lower))}")
        if key in S3_BOOL_PARAMS and value not in _GO_BOOLS:
            raise ConfigError(f"{where}: backend_url: {key}={value!r} must be true or false")
        if key == "endpoint" and not value:
            raise ConfigError(f"{where}: backend_url: endpoint= is empty (e.g. endpoint=http://127.0.0.1:9000)")


def check_secrets_provider(provider: str, where: str = "config") -> str:
    """'passphrase' or a KMS URL with something after the scheme; raises ConfigError otherwise."""
    if provider == "passphrase":
        return provider
    if not provider.startswith(SECRETS_SCHEMES) or provider.split("://", 1)[1] in ("", "/"):
        raise ConfigError(
            f"{where}: secrets_provider: expected 'passphrase' or a key URL such as awskms://alias/benchctl, "
            f"gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K, azurekeyvault://VAULT.vault.azure.net/keys/K "
            f"or hashivault://KEY, got {redact_url(provider)!r}"
        )
    return provider


def _passphrase_from_env() -> bool:
    return os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None or bool(os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"))


def resolve_backend(cfg: BenchConfig, *, create: bool = True) -> Backend:
    """The state backend and secrets provider for this config, with the environment the CLI needs.

    Default: a file backend under the project directory, `.benchctl/state`, and a passphrase kept in
    `.benchctl/passphrase` (0600) unless PULUMI_CONFIG_PASSPHRASE(_FILE) is set. On a shared backend
    (anything but file://) the passphrase must come from the environment: one generated here would make
    the stack's secrets unreadable to everybody else. Nothing is created for a shared backend, and
    nothing at all with `create=False` (`benchctl doctor` only looks).
    """
    home = cfg.project_dir / STATE_DIR
    where = str(cfg.source or "config")
    raw = cfg.backend_url or os.environ.get("PULUMI_BACKEND_URL") or f"file://{home / 'state'}"
    kind, url = parse_backend_url(raw, cfg.project_dir, where)
    env = {"PULUMI_BACKEND_URL": url}
    if kind == "file" and create:
        Path(url[len("file://"):]).mkdir(parents=True, exist_ok=True)
    if cfg.secrets_provider:
        provider = check_secrets_provider(cfg.secrets_provider, where)
    else:
        provider = "service" if kind == "cloud" else "passphrase"
    if provider == "passphrase" and not _passphrase_from_env():
        if kind != "file":
            raise ConfigError(
                f"{where}: the backend {redact_url(url)} is shared, so its secrets need a key everybody has: "
                f"set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) to the team's passphrase, "
                f"or set secrets_provider to a KMS key (awskms://, gcpkms://, azurekeyvault://, hashivault://)"
            )
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(_passphrase_file(home) if create else home / "passphrase")
    return Backend(url=url, kind=kind, secrets_provider=provider, env=env)


def _passphrase_file(home: Path) -> Path:
    """A generated passphrase in a 0600 file, created once per project directory."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "passphrase"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path


# ------------------------------------------------------------------------------------------ reaching it

# Lines of a Pulumi error that are about the state backend itself (gocloud "blob" errors, the
# bucket, the backend's meta.yaml, Pulumi Cloud login), not about a resource that failed.
_UNREACHABLE = re.compile(
    r"blob \(|could not list bucket|NoSuchBucket|ContainerNotFound|error listing stacks|open bucket|"
    r"\.pulumi/meta\.yaml|PULUMI_ACCESS_TOKEN|getting user info|failed to log ?in|invalid access token",
    re.I,
)


_REASON = re.compile(
    r"(NoSuchBucket\b.*|ContainerNotFound\b.*|dial tcp .*|lookup .*no such host.*|InvalidAccessKeyId\b.*|"
    r"SignatureDoesNotMatch\b.*|AccessDenied\b.*|ExpiredToken\b.*|PULUMI_ACCESS_TOKEN.*|"
    r"failed to refresh cached credentials.*|could not find default credentials.*)"
)


def backend_error(text: str) -> str | None:
    """Why the backend cannot be reached, from a Pulumi error (None when the error is about something else).

    The gocloud error lines are long ("blob (key …) (code=Unknown): operation error S3: GetObject,
    exceeded maximum number of attempts, …"): the cause at their end is what a user can act on.
    """
    for line in text.splitlines():
        if _UNREACHABLE.search(line) and not line.lstrip().startswith("SDK "):
            line = re.sub(r"^(?:\s*(?:stderr|error):\s*)+", "", line.strip())
            cause = _REASON.search(line)
            return cause[1] if cause else line
    return None


def check_reachable(backend: Backend, cli_path: Path, timeout: float = 30.0) -> dict[str, Any]:
    """Ask the Pulumi CLI itself to list the backend's stacks (`pulumi stack ls --all --json`).

    The CLI is the client that matters: it reads the URL's parameters (endpoint, path style, profile)
    exactly as every later command will. It runs in an empty temporary directory, so it creates
    nothing in the project. Returns {"reachable": bool, "stacks": int | None, "error": str | None}.
    """
    import json

    if backend.kind == "file":
        path = Path(backend.url[len("file://"):])
        if not path.exists():  # not created yet: fine if it can be
            parent = next(p for p in path.parents if p.exists())
            ok = os.access(parent, os.W_OK)
            return {"reachable": ok, "stacks": 0 if ok else None, "error": None if ok else f"{parent} is not writable"}
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_BACKEND_URL"}
    env.update(backend.env, PULUMI_SKIP_UPDATE_CHECK="true")
    with tempfile.TemporaryDirectory(prefix="benchctl-doctor-") as tmp:
        try:
            proc = subprocess.run([str(cli_path), "stack", "ls", "--all", "--json", "--non-interactive"],
                                  cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"reachable": False, "stacks": None, "error": f"no answer within {timeout:.0f}s"}
    if proc.returncode != 0:
        err = backend_error(proc.stderr) or next(
            (ln.strip() for ln in proc.stderr.splitlines() if ln.strip().startswith("error")), proc.stderr.strip())
        return {"reachable": False, "stacks": None, "error": redact_url(err)}
    try:
        count = len(json.loads(proc.stdout or "[]"))
    except ValueError:
        count = None
    return {"reachable": True, "stacks": count, "error": None}


def secrets_status(backend: Backend) -> str:
    """Where the secrets key comes from, in words (never the key)."""
    if backend.secrets_provider == "service":
        return "Pulumi Cloud's own per-stack keys"
    if backend.secrets_provider != "passphrase":
        return f"{redact_url(backend.secrets_provider)} (reached at first use with the cloud's credentials)"
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None:
        return "passphrase from PULUMI_CONFIG_PASSPHRASE"
    source = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE") or backend.env.get("PULUMI_CONFIG_PASSPHRASE_FILE", "")
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        state = "present" if Path(source).is_file() else "MISSING"
        return f"passphrase from PULUMI_CONFIG_PASSPHRASE_FILE={source} ({state})"
    state = "present" if Path(source).is_file() else "generated at the first create"
    return f"passphrase generated for this project: {source} ({state})"


def s3_client(url: str) -> tuple[Any, str, str]:
    """(boto3 client, bucket, key prefix) for an s3:// backend URL, honouring endpoint, region, path style
    and profile as Pulumi does. Needs boto3 (the `aws` extra); raises ImportError without it."""
    import boto3
    from botocore.config import Config

    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    endpoint = q.get("endpoint")
    if endpoint and "://" not in endpoint:
        insecure = q.get("disable_https", q.get("disableSSL", "false")).lower() in ("1", "t", "true")
        endpoint = f"{'http' if insecure else 'https'}://{endpoint}"
    path_style = q.get("use_path_style", q.get("s3ForcePathStyle", "")).lower() in ("1", "t", "true")
    session = boto3.session.Session(profile_name=q.get("profile") or None)
    client = session.client(
        "s3", region_name=q.get("region") or None, endpoint_url=endpoint or None,
        config=Config(s3={"addressing_style": "path" if path_style else "auto"}, connect_timeout=5,
                      read_timeout=15, retries={"max_attempts": 2}),
    )
    prefix = parts.path.strip("/")
    return client, parts.netloc, f"{prefix}/" if prefix else ""
