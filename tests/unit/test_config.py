"""bench.toml as a user meets it: through `benchctl validate`, its messages, its warnings and its docs."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from benchctl import config as config_module
from benchctl.cli import main
from benchctl.config import BenchConfig, load_config, parse_duration
from benchctl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "tests" / "fixtures" / "configs"
BAD = sorted((CONFIGS / "bad").glob("*.toml"))
SEED_DOC = REPO / "docs" / "seed" / "cloud-providers.md"  # the user's original document, verbatim
DOC = REPO / "docs" / "configuration.md"
PROVIDERS = ("aws", "gcp", "scaleway")
# Every variable that can carry a credential or change what the loader does: cleared for each test.
ENV_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN", "SCW_ACCESS_KEY",
            "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT",
            "GOOGLE_APPLICATION_CREDENTIALS", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "PULUMI_BACKEND_URL",
            "BENCHCTL_OWNER")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ambient credentials, and a cwd of our own where nothing may appear."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def seed_file(tmp_path: Path, provider: str, extra: str = "") -> Path:
    """The seed's example for `provider`, verbatim, plus the two keys a benchmark needs."""
    path = tmp_path / f"{provider}.toml"
    block = (CONFIGS / "seed" / f"{provider}.toml").read_text()
    path.write_text(f'bench_id = "seed-{provider}"\nmodel = "Qwen/Qwen2.5-0.5B-Instruct"\n{extra}{block}')
    return path


def validate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # no crash
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, text: str, name: str = "bench.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------- the seed


def test_seed_fixtures_are_the_seed_verbatim() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", SEED_DOC.read_text(), re.S)
    for provider in PROVIDERS:
        assert (CONFIGS / "seed" / f"{provider}.toml").read_text() in blocks


@pytest.mark.parametrize("provider", PROVIDERS)
def test_seed_example_validates(tmp_path: Path, provider: str) -> None:
    code, out, err = validate("-c", str(seed_file(tmp_path, provider)))
    assert code == 0, err
    assert f"valid ({provider}, vllm" in out


def test_seed_aws_example_has_no_warnings(tmp_path: Path) -> None:
    code, _, err = validate("-c", str(seed_file(tmp_path, "aws")))
    assert (code, err) == (0, "")
    cfg = load_config(seed_file(tmp_path, "aws"))
    assert cfg.aws is not None and cfg.aws.profile_name == "my-aws-profile"
    assert cfg.aws.gpu_ami == "ami-072c3e2520d9af5fa" and cfg.aws.instance_type == "g4dn.xlarge"


def test_seed_gcp_example_warns_what_to_set_instead(tmp_path: Path) -> None:
    code, _, err = validate("-c", str(seed_file(tmp_path, "gcp")))
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3, err
    keys, project, zone = warnings
    assert "access_key/secret_key" in keys and "ignores them" in keys
    assert "credentials_file" in keys and "gcloud auth application-default login" in keys
    assert "[gcp].project" in project and "GOOGLE_CLOUD_PROJECT" in project
    assert "[gcp].zone" in zone and "us-central1-a" in zone


def test_seed_gcp_instance_type_is_kept_for_the_stack(tmp_path: Path) -> None:
    cfg = load_config(seed_file(tmp_path, "gcp"))
    assert cfg.gcp is not None
    assert cfg.gcp.instance_type == "n1-standard-8-nvidia-tesla-t4"
    assert cfg.gcp.effective_zone() == "us-central1-a"


def test_gcp_warnings_go_away_once_project_and_zone_are_set(tmp_path: Path) -> None:
    path = write(tmp_path, 'bench_id = "gcp-ok"\nmodel = "m"\nprovider = "gcp"\n[gcp]\nregion = "us-central1"\n'
                           'zone = "us-central1-b"\nproject = "my-proj"\ninstance_type = "g2-standard-8"\n'
                           'launcher_instance_type = "e2-micro"\n')
    code, _, err = validate("-c", str(path))
    assert (code, err) == (0, "")


def test_seed_scaleway_example_warns_about_placeholders(tmp_path: Path) -> None:
    code, _, err = validate("-c", str(seed_file(tmp_path, "scaleway")))
    assert code == 0
    assert "placeholders" in err and "SCW_ACCESS_KEY/SCW_SECRET_KEY" in err
    assert "[scaleway].project_id" in err


def test_validate_json_for_seed_gcp(tmp_path: Path) -> None:
    code, out, _ = validate("-c", str(seed_file(tmp_path, "gcp")), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["valid"] is True and doc["provider"] == "gcp" and doc["bench_id"] == "seed-gcp"
    assert any("credentials_file" in w for w in doc["warnings"])


# ------------------------------------------------------------------------------------- bad input


def expected_fragment(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <key path>'"
    return first.removeprefix("# expect: ").strip()


def test_the_bad_corpus_is_large_enough() -> None:
    assert len(BAD) >= 25


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_config_is_refused_with_file_key_and_expectation(path: Path, clean_env: Path) -> None:
    code, out, err = validate("-c", str(path))
    assert code == 2, f"{path.name} was accepted:\n{out}{err}"
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith(f"error: {path}: "), err
    assert expected_fragment(path) in err
    assert all("expected" in line for line in lines), err
    assert list(clean_env.iterdir()) == []  # nothing created, not even .benchctl/


@pytest.mark.parametrize("name", ["unknown-provider", "bad-toml-syntax", "not-utf8"])
def test_bad_config_through_the_real_command(name: str, clean_env: Path) -> None:
    path = CONFIGS / "bad" / f"{name}.toml"
    proc = subprocess.run([sys.executable, "-m", "benchctl", "validate", "-c", str(path)], cwd=clean_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert str(path) in proc.stderr and expected_fragment(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(clean_env.iterdir()) == []


def test_missing_file(clean_env: Path) -> None:
    code, _, err = validate("-c", "nope.toml")
    assert code == 2 and "nope.toml: file not found" in err and "--config/-c" in err
    assert list(clean_env.iterdir()) == []


def test_default_config_is_bench_toml_in_cwd(clean_env: Path) -> None:
    code, _, err = validate()
    assert code == 2 and "bench.toml: file not found" in err
    (clean_env / "bench.toml").write_text('bench_id = "from-cwd"\n')
    code, out, _ = validate()
    assert code == 0 and "bench.toml: valid (local, simulator" in out


def test_directory_instead_of_a_file(tmp_path: Path, clean_env: Path) -> None:
    code, _, err = validate("-c", str(tmp_path))
    assert code == 2 and f"{tmp_path}: is a directory, expected a TOML file" in err
    assert list(clean_env.iterdir()) == []


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'bench_id = "x_y"\nprovider = "azure"\n[benchmark]\nrequests = 0\nconcurency = 3\n')
    code, _, err = validate("-c", str(path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 4, err
    for key in ("bench_id:", "provider:", "[benchmark].requests:", "[benchmark].concurency:"):
        assert sum(key in line for line in lines) == 1, (key, err)


def test_union_keys_report_one_clear_message(tmp_path: Path) -> None:
    """`concurrency` is an integer or an array: a bad value gets one line, not one per branch."""
    path = write(tmp_path, 'bench_id = "u-1"\n[benchmark]\nconcurrency = "4"\n')
    _, _, err = validate("-c", str(path))
    assert err.strip().splitlines() == [
        f"error: {path}: [benchmark].concurrency: expected an array or an integer, got '4' (string)"]


def test_unknown_key_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, 'bench_id = "k-1"\n[local]\nport = 22\n')
    _, _, err = validate("-c", str(path))
    assert "[local].port: unknown key; expected one of: host, ssh, sshd_path" in err


def test_internal_fields_cannot_be_set_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'bench_id = "k-1"\nwarnings = []\n')
    code, _, err = validate("-c", str(path))
    assert code == 2 and "warnings: unknown key" in err


CONFIG_COMMANDS = sorted(name for name, cmd in main.commands.items() if any(p.name == "config_path" for p in cmd.params))


def test_the_lifecycle_commands_take_a_config() -> None:
    assert {"validate", "preview", "create", "connection", "deploy", "run", "results", "destroy"} <= set(CONFIG_COMMANDS)


@pytest.mark.parametrize("command", [*CONFIG_COMMANDS, "up", "down"])
def test_every_config_command_refuses_a_bad_file_before_doing_anything(command: str, clean_env: Path) -> None:
    path = CONFIGS / "bad" / "unknown-top-level-key.toml"
    result = CliRunner().invoke(main, [command, "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert "colour: unknown key" in result.stderr
    assert list(clean_env.iterdir()) == []


# ------------------------------------------------------------------------------------- values


def test_types_are_taken_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, 'bench_id = "t-1"\n[simulator]\nitl_ms = 4\n[benchmark]\nconcurrency = 8\nrate = 2\n')
    cfg = load_config(path)
    assert cfg.simulator.itl_ms == 4.0  # an integer is a fine number
    assert cfg.benchmark.concurrency_list() == [8] and cfg.benchmark.rate_list() == [2.0]


def test_defaults_of_a_minimal_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'bench_id = "min"\n'))
    assert (cfg.provider, cfg.engine_name, cfg.model_name, cfg.engine_port) == ("local", "simulator", "benchctl-sim",
                                                                                8000)
    assert cfg.lifetime == timedelta(hours=4)
    assert cfg.benchmark.concurrency_list() == [1, 4, 16]
    assert cfg.project_dir == tmp_path.resolve()


def test_cloud_engine_defaults(tmp_path: Path) -> None:
    cfg = load_config(seed_file(tmp_path, "aws", extra='inference_engine = "sglang"\n'))
    assert (cfg.engine_name, cfg.engine_port, cfg.cloud) == ("sglang", 30000, cfg.aws)


@pytest.mark.parametrize(("text", "seconds"), [("4h", 14400), ("90m", 5400), ("1h30m", 5400), ("1d", 86400),
                                               ("45s", 45), (45, 45), (1.5, 1.5)])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "forever", "4 hours", "0h", "-5", 0, -3, "1.5h"])
def test_parse_duration_rejects(text: str | int) -> None:
    with pytest.raises(ValueError, match="expected a"):
        parse_duration(text)


# ------------------------------------------------------------------------------------- secrets


def test_keys_never_have_to_be_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVONLY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-only-secret")
    cfg = load_config(seed_file(tmp_path, "aws"))
    assert cfg.aws is not None and cfg.aws.access_key is not None and cfg.aws.secret_key is not None
    assert cfg.aws.access_key.get_secret_value() == "AKIAENVONLY"
    assert cfg.aws.secret_key.get_secret_value() == "env-only-secret"


def test_aws_environment_overrides_file_keys_only_as_a_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'bench_id = "keys"\nmodel = "m"\nprovider = "aws"\n[aws]\nregion = "us-east-1"\n'
                           'instance_type = "g4dn.xlarge"\nlauncher_instance_type = "t3.micro"\n'
                           'access_key = "AKIAFILE"\nsecret_key = "file-secret"\n')
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    cfg = load_config(path)  # a lone id would pair with the file's secret: ignored
    assert cfg.aws is not None and cfg.aws.access_key is not None
    assert cfg.aws.access_key.get_secret_value() == "AKIAFILE"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    cfg = load_config(path)
    assert cfg.aws is not None and cfg.aws.access_key is not None and cfg.aws.secret_key is not None
    assert (cfg.aws.access_key.get_secret_value(), cfg.aws.secret_key.get_secret_value()) == ("AKIAENV", "env-secret")


def test_aws_placeholder_warning_goes_away_with_real_keys_in_env(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    extra_keys = 'access_key = "YOUR_AWS_ACCESS_KEY"\nsecret_key = "YOUR_AWS_SECRET_KEY"\n'
    path = seed_file(tmp_path, "aws")
    path.write_text(path.read_text().replace('profile_name = "my-aws-profile"\n', extra_keys))
    _, _, err = validate("-c", str(path))
    assert "seed's placeholders" in err and "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREAL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    code, _, err = validate("-c", str(path))
    assert (code, err) == (0, "")


def test_scaleway_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCW_ACCESS_KEY", "SCWENVKEY")
    monkeypatch.setenv("SCW_SECRET_KEY", "scw-env-secret")
    monkeypatch.setenv("SCW_DEFAULT_PROJECT_ID", "proj-123")
    cfg = load_config(seed_file(tmp_path, "scaleway"))
    assert cfg.scaleway is not None and cfg.scaleway.access_key and cfg.scaleway.secret_key
    assert cfg.scaleway.access_key.get_secret_value() == "SCWENVKEY"
    assert cfg.scaleway.secret_key.get_secret_value() == "scw-env-secret"
    assert cfg.scaleway.project_id == "proj-123"
    assert cfg.warnings == []


def test_gcp_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/keys/sa.json")
    cfg = load_config(seed_file(tmp_path, "gcp"))
    assert cfg.gcp is not None
    assert (cfg.gcp.project, cfg.gcp.credentials_file) == ("env-project", "/keys/sa.json")
    assert not any("[gcp].project" in w for w in cfg.warnings)


@pytest.mark.parametrize("var", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_hf_token_from_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       var: str) -> None:
    path = write(tmp_path, 'bench_id = "hf"\n[engine]\nhf_token = "hf_from_file"\n')
    cfg = load_config(path)
    assert cfg.engine.hf_token is not None and cfg.engine.hf_token.get_secret_value() == "hf_from_file"
    assert any("HF_TOKEN" in w for w in cfg.warnings)  # a token in the file is discouraged
    monkeypatch.setenv(var, "hf_from_env")
    cfg = load_config(path)
    assert cfg.engine.hf_token is not None and cfg.engine.hf_token.get_secret_value() == "hf_from_env"


def test_secrets_never_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'bench_id = "leak"\nmodel = "m"\nprovider = "aws"\n[aws]\nregion = "us-east-1"\n'
                           'instance_type = "g4dn.xlarge"\nlauncher_instance_type = "t3.micro"\n'
                           'access_key = "AKIAFILEVALUE"\nsecret_key = "FILE-SECRET-VALUE"\n'
                           '[engine]\nhf_token = "hf_FILE_TOKEN_VALUE"\n')
    file_secrets = ("AKIAFILEVALUE", "FILE-SECRET-VALUE", "hf_FILE_TOKEN_VALUE")
    env_secrets = {"AWS_ACCESS_KEY_ID": "AKIAENVVALUE", "AWS_SECRET_ACCESS_KEY": "ENV-SECRET-VALUE",
                   "HF_TOKEN": "hf_ENV_TOKEN_VALUE", "SCW_SECRET_KEY": "SCW-ENV-SECRET-VALUE"}
    for phase in ("file", "env"):
        if phase == "env":
            for k, v in env_secrets.items():
                monkeypatch.setenv(k, v)
        for args in (["--json"], []):
            result = CliRunner().invoke(main, ["validate", "-c", str(path), *args])
            assert result.exit_code == 0
            for secret in (*file_secrets, *env_secrets.values()):
                assert secret not in result.stdout and secret not in result.stderr
        cfg = load_config(path)
        shown = repr(cfg) + str(cfg) + cfg.model_dump_json() + repr(cfg.model_dump())
        for secret in (*file_secrets, *env_secrets.values()):
            assert secret not in shown


def test_config_errors_never_echo_a_secret(tmp_path: Path) -> None:
    path = write(tmp_path, 'bench_id = "leak"\nmodel = "m"\nprovider = "aws"\n[aws]\nregion = "us-east-1"\n'
                           'instance_type = "g4dn.xlarge"\nlauncher_instance_type = "t3.micro"\n'
                           'access_key = "AKIALONEVALUE"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "AKIALONEVALUE" not in str(info.value)
    assert "[aws]: access_key and secret_key: expected both or neither" in str(info.value)
    path.write_text(path.read_text() + "secret_key = 9876543210\n[engine]\nhf_token = ['hf_LISTED_TOKEN']\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "[aws].secret_key: expected a string, got a hidden value (integer)" in message
    assert "[engine].hf_token: expected a string, got a hidden value (array)" in message
    assert "9876543210" not in message and "hf_LISTED_TOKEN" not in message


# ------------------------------------------------------------------------------------- docs


def section_models() -> dict[str, type[BaseModel]]:
    """'top' -> BenchConfig, 'aws' -> AwsConfig, …: found from the models, so a new section needs docs."""
    found: dict[str, type[BaseModel]] = {"top": BenchConfig}
    for name, field in BenchConfig.model_fields.items():
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found[name] = arg
    return found


def doc_sections() -> dict[str, str]:
    """The text under each '## …' heading of docs/configuration.md, keyed by section name."""
    text = DOC.read_text()
    out: dict[str, str] = {}
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = chunk.partition("\n")
        m = re.search(r"\[(\w+)\]", heading)
        key = m[1] if m and heading.startswith("`[") else "top" if heading.startswith("Top-level") else heading
        out[key] = body
    return out


def test_docs_cover_every_section() -> None:
    assert set(section_models()) == {"top", "aws", "gcp", "scaleway", "local", "engine", "simulator", "benchmark"}
    assert set(section_models()) <= set(doc_sections())


@pytest.mark.parametrize("section", sorted(section_models()))
def test_docs_list_every_key_of_every_section(section: str) -> None:
    model = section_models()[section]
    body = doc_sections()[section]
    if section in ("aws", "gcp", "scaleway"):
        body += doc_sections()["Keys every cloud section shares"]
    internal = {"source", "warnings"}
    missing = [f for f in model.model_fields if f not in internal and f"`{f}`" not in body]
    assert not missing, f"docs/configuration.md, section [{section}], does not document: {missing}"


def test_docs_list_every_environment_variable_the_loader_reads() -> None:
    source = inspect.getsource(config_module._apply_environment) + inspect.getsource(BenchConfig.resolved_owner)
    names = set(re.findall(r"""env(?:iron)?(?:\.get\(|\[)["']([A-Z_]+)["']""", source))
    assert {"AWS_ACCESS_KEY_ID", "SCW_SECRET_KEY", "HF_TOKEN", "BENCHCTL_OWNER"} <= names
    env_table = doc_sections()["Environment variables"]
    assert not [n for n in names if f"`{n}`" not in env_table]


def test_docs_quote_the_seed_examples_verbatim() -> None:
    text = DOC.read_text()
    for provider in PROVIDERS:
        assert f"```toml\n{(CONFIGS / 'seed' / f'{provider}.toml').read_text()}```" in text


def test_docs_complete_examples_validate(tmp_path: Path) -> None:
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S) if "bench_id" in b]
    assert blocks, "docs/configuration.md has no complete example"
    for i, block in enumerate(blocks):
        cfg = load_config(write(tmp_path, block, f"doc{i}.toml"))
        assert cfg.warnings == []
        # a complete example shows every section
        assert all(f"[{s}]" in block for s in ("local", "engine", "simulator", "benchmark"))
