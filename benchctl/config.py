"""bench.toml: the pydantic models, the loader, and the messages for bad input.

The provider blocks accept the seed document's keys verbatim (`[aws]`, `[gcp]`, `[scaleway]`), plus
the keys the real clouds need. Fields that the seed shows but a cloud cannot use (GCP access/secret
keys) are accepted and explained in a warning. Secrets are `SecretStr`: they never print, and
environment variables override them, so no key ever has to be written in the file.

This module imports no Pulumi and no cloud SDK: `benchctl validate` must stay fast.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from benchctl.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROVIDERS = ("aws", "gcp", "scaleway", "local")
ENGINES = ("vllm", "sglang", "tgi", "ollama", "llamacpp", "simulator")
DEFAULT_ENGINE_PORT = {"vllm": 8000, "sglang": 30000, "tgi": 8080, "ollama": 11434, "llamacpp": 8080, "simulator": 8000}

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class Strict(BaseModel):
    """Every section rejects unknown keys (a typo must not silently become a default) and takes TOML's
    types as written: `requests = "200"` or `requests = true` is an error, not a silent conversion."""

    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)


def parse_duration(value: str | int | float) -> timedelta:
    """'4h', '90m', '1h30m', '45s' or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"expected a positive duration such as '4h', '90m' or '1h30m', got {value!r}")
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '4h', '90m' or '1h30m'")
    parts = re.fullmatch(r"\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*", value)
    if not parts or not any(parts.groups()):
        raise ValueError(f"expected a duration such as '4h', '90m' or '1h30m', got {value!r}")
    d, h, m, s = (int(g or 0) for g in parts.groups())
    delta = timedelta(days=d, hours=h, minutes=m, seconds=s)
    if delta.total_seconds() <= 0:
        raise ValueError(f"expected a positive duration such as '4h', '90m' or '1h30m', got {value!r}")
    return delta


class CloudBase(Strict):
    """Keys every cloud block shares."""

    region: str
    instance_type: str
    launcher_instance_type: str
    market: Literal["on-demand", "spot"] = "on-demand"
    ssh_cidr: str | None = Field(
        default=None,
        description="CIDR allowed to reach SSH; default: the operator's detected public address /32",
    )
    root_volume_gb: PositiveInt | None = None

    @field_validator("ssh_cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import ipaddress

        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ValueError(f"expected a CIDR such as '203.0.113.7/32', got {v!r}") from None
        return v


class AwsConfig(CloudBase):
    gpu_ami: str | None = None
    cpu_ami: str | None = None
    profile_name: str | None = None
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    subnet_id: str | None = None

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> AwsConfig:
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("access_key and secret_key: expected both or neither (leave both out to use "
                             "profile_name or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
        return self


class GcpConfig(CloudBase):
    zone: str | None = None
    project: str | None = None
    credentials_file: str | None = None
    network: str = "default"
    image_family: str | None = None
    image_project: str | None = None
    # The seed shows these; GCP has no such keys. Accepted so the seed's file validates, then explained.
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None

    def effective_zone(self) -> str:
        return self.zone or f"{self.region}-a"


class ScalewayConfig(CloudBase):
    zone: str | None = None
    project_id: str | None = None
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    image: str | None = None
    launcher_image: str = "ubuntu_jammy"

    def effective_zone(self) -> str:
        return self.zone or f"{self.region}-1"


class LocalConfig(Strict):
    """The embedded default: both "instances" are processes on this machine."""

    ssh: Literal["auto", "sshd", "none"] = Field(
        default="auto",
        description="auto: a private sshd when installed, else a local launcher; none: never use SSH",
    )
    sshd_path: str | None = None
    host: str = "127.0.0.1"


class EngineConfig(Strict):
    """How the model server is started."""

    port: PositiveInt | None = None
    args: list[str] = Field(default_factory=list)
    command: str | None = Field(default=None, description="local provider: the server command to run")
    image: str | None = Field(default=None, description="container image for docker-based engines")
    hf_token: SecretStr | None = None
    startup_timeout_s: PositiveFloat = 1800.0


class SimulatorConfig(Strict):
    """Timing model of the simulator engine (all milliseconds)."""

    prefill_ms_per_1k_tokens: Annotated[float, Field(ge=0)] = 20.0
    ttft_base_ms: Annotated[float, Field(ge=0)] = 10.0
    itl_ms: Annotated[float, Field(ge=0)] = 5.0
    itl_ms_per_running_seq: Annotated[float, Field(ge=0)] = 0.05
    max_running: PositiveInt = 256
    tokens_per_chunk: PositiveInt = 1
    fail_rate: Annotated[float, Field(ge=0, le=1)] = 0.0


class BenchmarkConfig(Strict):
    """The load test: what `benchctl bench` flags set, written down."""

    api: Literal["chat", "completions"] = "chat"
    concurrency: Annotated[list[PositiveInt], Field(min_length=1)] | PositiveInt = Field(
        default_factory=lambda: [1, 4, 16])
    rate: Annotated[list[PositiveFloat], Field(min_length=1)] | PositiveFloat | None = None
    arrival: Literal["constant", "poisson"] = "poisson"
    requests: PositiveInt | None = 200
    duration_s: PositiveFloat | None = None
    warmup: NonNegInt = 8
    input_tokens: PositiveInt = 128
    output_tokens: PositiveInt = 64
    dataset: str | None = None
    slo: dict[Literal["ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"], PositiveFloat] = Field(default_factory=dict)
    timeout_s: PositiveFloat = 300.0
    max_error_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    seed: int = 0

    def concurrency_list(self) -> list[int]:
        return self.concurrency if isinstance(self.concurrency, list) else [self.concurrency]

    def rate_list(self) -> list[float] | None:
        if self.rate is None:
            return None
        return self.rate if isinstance(self.rate, list) else [self.rate]


class BenchConfig(Strict):
    bench_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$")]
    provider: Literal["aws", "gcp", "scaleway", "local"] = "local"
    inference_engine: Literal["vllm", "sglang", "tgi", "ollama", "llamacpp", "simulator"] | None = None
    model: str | None = None
    backend_url: str | None = None
    secrets_provider: str | None = None
    max_lifetime: str = "4h"
    owner: str | None = None
    aws: AwsConfig | None = None
    gcp: GcpConfig | None = None
    scaleway: ScalewayConfig | None = None
    local: LocalConfig = Field(default_factory=LocalConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)

    # Where the file was read from; results and local state live beside it.
    source: Path | None = Field(default=None, exclude=True)
    warnings: list[str] = Field(default_factory=list, exclude=True)

    @field_validator("max_lifetime")
    @classmethod
    def _lifetime(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> BenchConfig:
        if self.provider != "local" and getattr(self, self.provider) is None:
            raise ValueError(f"[{self.provider}]: missing section; expected an [{self.provider}] table because "
                             f"provider = {self.provider!r} (see docs/configuration.md)")
        if self.engine_name != "simulator" and not self.model:
            raise ValueError(f"model: missing key; expected the model that inference_engine = {self.engine_name!r} "
                             "serves (a Hugging Face id such as 'Qwen/Qwen2.5-0.5B-Instruct')")
        return self

    @property
    def engine_name(self) -> str:
        """`inference_engine`, defaulting to the simulator locally and vLLM on a cloud."""
        return self.inference_engine or ("simulator" if self.provider == "local" else "vllm")

    @property
    def model_name(self) -> str:
        return self.model or "benchctl-sim"

    @property
    def engine_port(self) -> int:
        return self.engine.port or DEFAULT_ENGINE_PORT[self.engine_name]

    @property
    def lifetime(self) -> timedelta:
        return parse_duration(self.max_lifetime)

    @property
    def cloud(self) -> CloudBase | None:
        return None if self.provider == "local" else getattr(self, self.provider)

    @property
    def project_dir(self) -> Path:
        return (self.source.parent if self.source else Path.cwd()).resolve()

    def resolved_owner(self) -> str:
        import getpass

        return self.owner or os.environ.get("BENCHCTL_OWNER") or getpass.getuser()


# ---------------------------------------------------------------------------------------------------
# Loading and messages


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    name = kind.get(type(value), type(value).__name__)
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return f"{text[:40]}… ({name})" if len(text) > 40 else f"{text} ({name})"


_SECTIONS = ("aws", "gcp", "scaleway", "local", "engine", "simulator", "benchmark")
_INTERNAL = ("source", "warnings")  # fields benchctl fills in; never read from the file
_SECRET_KEYS = ("access_key", "secret_key", "hf_token")
_MISMATCH = {
    "int_type": "an integer", "float_type": "a number", "string_type": "a string", "bool_type": "true or false",
    "list_type": "an array", "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
}


def _is_union_tag(part: Any) -> bool:
    """pydantic names the branch of a union in `loc` ('list[constrained-int]', 'constrained-int', '[key]')."""
    return isinstance(part, str) and ("[" in part or "-" in part or part in ("int", "float", "str", "literal"))


def _key_path(loc: tuple[Any, ...]) -> str:
    """('aws', 'instance_type') -> '[aws].instance_type'; ('benchmark','concurrency',2) -> '[benchmark].concurrency[2]'."""
    parts = [p for p in loc if not _is_union_tag(p)]
    if not parts:
        return "(top level)"
    out = ""
    for i, p in enumerate(parts):
        if isinstance(p, int):
            out += f"[{p}]"
        elif i == 0 and p in _SECTIONS:
            out = f"[{p}]"
        elif not out:
            out = str(p)
        else:
            out += f".{p}"
    return out


def _got(e: Any) -> str:
    """The offending value as written, except for a secret key's, which is never echoed."""
    value = e.get("input")
    if any(str(part) in _SECRET_KEYS for part in e["loc"]):
        return f"a hidden value ({_describe(value).rsplit('(', 1)[-1]}"
    return _describe(value)


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(sorted(f for f in model.model_fields if f not in _INTERNAL))


def _kind_of(loc: tuple[Any, ...]) -> str:
    """The TOML type a key takes, for 'required key is missing; expected a string'."""
    parent = _parent_model(loc[:-1])
    field = parent.model_fields.get(str(loc[-1])) if parent else None
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "an array"}
    ann = field.annotation if field else None
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a table"
    return names.get(ann, "a value") if isinstance(ann, type) else "a value"


def _expected(e: Any) -> str:
    """What one pydantic error expected, in the words of a TOML file."""
    kind, ctx, got = e["type"], e.get("ctx", {}), _got(e)
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '')}, got {got}"
    if kind in _MISMATCH:
        return f"expected {_MISMATCH[kind]}, got {got}"
    bounds = {"greater_than": ("greater than", "gt"), "greater_than_equal": ("at least", "ge"),
              "less_than": ("less than", "lt"), "less_than_equal": ("at most", "le")}
    if kind in bounds:
        words, name = bounds[kind]
        bound = ctx.get(name)
        shown = f"{bound:g}" if isinstance(bound, (int, float)) else bound
        return f"expected a number {words} {shown}, got {got}"
    if kind == "too_short":
        n = ctx.get("min_length")
        return f"expected {'a non-empty array' if n == 1 else f'at least {n} items'}, got {got}"
    if kind == "string_pattern_mismatch" and tuple(e["loc"]) == ("bench_id",):
        return ("expected 2-40 characters of lowercase letters, digits and '-', starting and ending "
                f"with a letter or digit, got {got}")
    if kind == "value_error":
        return str(ctx.get("error", e["msg"]))
    msg = e["msg"].replace("Input should be", "expected", 1)
    return f"{msg[0].lower()}{msg[1:]}, got {got}"


def _messages(path: Path, err: ValidationError, raw: dict[str, Any]) -> list[str]:
    """One line per problem: file, key path, what was expected and what was found.

    A union (`concurrency = 4` or `[1, 4]`) fails once per branch; the branch whose type does not
    even match is dropped when another branch says what is really wrong, and type-only failures at
    one key are merged into a single "expected X or Y".
    """
    found: list[tuple[str, str, Any]] = []  # (key path, kind, error)
    for e in err.errors():
        loc = tuple(e["loc"])
        kind = e["type"]
        if kind == "extra_forbidden":
            parent = _parent_model(loc[:-1])
            e = {**e, "type": "value_error", "ctx": {"error": "unknown key; expected one of: "
                                                     + (_allowed_keys(parent) if parent else "")}}
        elif kind == "missing":
            e = {**e, "type": "value_error", "ctx": {"error": f"required key is missing; expected {_kind_of(loc)}"}}
        found.append((_key_path(loc), e["type"], e))

    def specific_elsewhere(key: str) -> bool:
        return any(k2 == key or k2.startswith((key + "[", key + ".")) for k2, kind2, _ in found
                   if kind2 not in _MISMATCH)

    kept: list[tuple[str, Any]] = []
    merged: dict[str, list[Any]] = {}
    for key, kind, e in found:
        if kind in _MISMATCH:
            if specific_elsewhere(key):
                continue
            if key in merged:
                merged[key].append(e)
                continue
            merged[key] = [e]
        kept.append((key, e))
    out: list[str] = []
    for key, e in kept:
        if e["type"] in _MISMATCH and len(merged.get(key, [])) > 1:
            kinds = " or ".join(dict.fromkeys(_MISMATCH[x["type"]] for x in merged[key]))
            msg = f"expected {kinds}, got {_got(e)}"
        else:
            msg = _expected(e)
        line = f"{path}: {msg}" if key == "(top level)" else f"{path}: {key}: {msg}"
        if line not in out:
            out.append(line)
    return out


def _parent_model(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = BenchConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = getattr(ann, "__args__", (ann,))
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def _apply_environment(cfg: BenchConfig) -> None:
    """Environment variables override secrets, so no key has to live in the file."""
    env = os.environ
    if cfg.aws and env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        cfg.aws.access_key = SecretStr(env["AWS_ACCESS_KEY_ID"])
        cfg.aws.secret_key = SecretStr(env["AWS_SECRET_ACCESS_KEY"])
    if cfg.scaleway:
        if env.get("SCW_ACCESS_KEY"):
            cfg.scaleway.access_key = SecretStr(env["SCW_ACCESS_KEY"])
        if env.get("SCW_SECRET_KEY"):
            cfg.scaleway.secret_key = SecretStr(env["SCW_SECRET_KEY"])
        if env.get("SCW_DEFAULT_PROJECT_ID") and not cfg.scaleway.project_id:
            cfg.scaleway.project_id = env["SCW_DEFAULT_PROJECT_ID"]
    if cfg.gcp:
        cfg.gcp.project = cfg.gcp.project or env.get("GOOGLE_CLOUD_PROJECT") or env.get("CLOUDSDK_CORE_PROJECT")
        cfg.gcp.credentials_file = cfg.gcp.credentials_file or env.get("GOOGLE_APPLICATION_CREDENTIALS")
    token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        cfg.engine.hf_token = SecretStr(token)
    if env.get("PULUMI_BACKEND_URL") and not cfg.backend_url:
        cfg.backend_url = env["PULUMI_BACKEND_URL"]


def _placeholder(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value().upper().startswith("YOUR_")


def _warnings(cfg: BenchConfig) -> list[str]:
    """Explain what the seed's placeholders mean on the real cloud, without refusing the file."""
    out = []
    if cfg.gcp and cfg.provider == "gcp":
        if cfg.gcp.access_key or cfg.gcp.secret_key:
            out.append("[gcp].access_key/secret_key: GCP has no access/secret keys and ignores them; set "
                       "[gcp].credentials_file to a service-account JSON key, or run "
                       "`gcloud auth application-default login`")
        if not cfg.gcp.project:
            out.append("[gcp].project is not set: set it (or GOOGLE_CLOUD_PROJECT) before `create`")
        if not cfg.gcp.zone:
            out.append(f"[gcp].zone is not set: using {cfg.gcp.effective_zone()} (GPUs exist only in some zones)")
    for name in ("aws", "scaleway"):
        block = getattr(cfg, name)
        if block is not None and cfg.provider == name and (_placeholder(block.access_key) or _placeholder(block.secret_key)):
            env = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" if name == "aws" else "SCW_ACCESS_KEY/SCW_SECRET_KEY"
            out.append(f"[{name}].access_key/secret_key are the seed's placeholders: set real keys in {env} "
                       "(environment variables override the file)")
    if cfg.provider == "scaleway" and cfg.scaleway and not cfg.scaleway.project_id:
        out.append("[scaleway].project_id is not set: set it (or SCW_DEFAULT_PROJECT_ID) before `create`")
    if cfg.engine.hf_token is not None and cfg.source and "hf_token" in cfg.source.read_text(errors="replace"):
        out.append("[engine].hf_token is written in the file: prefer the HF_TOKEN environment variable")
    return out


def load_config(path: str | Path, *, apply_env: bool = True) -> BenchConfig:
    """Read and validate a bench.toml. Raises ConfigError with one line per problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found; expected a TOML file (pass another with --config/-c)") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, expected a TOML file") from None
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.object[exc.start]:#04x} on line {line}); "
                          "expected a UTF-8 TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc}); expected a readable TOML file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"at line (\d+)", str(exc))
        lines = text.splitlines()
        quote = f": `{lines[int(at[1]) - 1].strip()}`" if at and 0 < int(at[1]) <= len(lines) else ""
        raise ConfigError(f"{p}: invalid TOML (expected key = value lines and [section] headers, "
                          f"see https://toml.io): {exc}{quote}") from None
    return config_from_dict(raw, source=p, apply_env=apply_env)


def config_from_dict(raw: dict[str, Any], *, source: Path | None = None, apply_env: bool = True) -> BenchConfig:
    where = source or Path("<config>")
    problems = [f"{where}: {k}: unknown key; expected one of: {_allowed_keys(BenchConfig)}"
                for k in _INTERNAL if k in raw]
    try:
        cfg = BenchConfig.model_validate({**{k: v for k, v in raw.items() if k not in _INTERNAL}, "source": source})
    except ValidationError as exc:
        problems += _messages(where, exc, raw)
    if problems:
        raise ConfigError("\n".join(problems))
    if apply_env:
        _apply_environment(cfg)
    cfg.warnings = _warnings(cfg)
    return cfg
