"""The CLI's shape: fast start, help on every command, documented commands, aliases, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from benchctl.cli import main

REPO = Path(__file__).resolve().parents[2]
SEED_AWS = REPO / "tests" / "fixtures" / "configs" / "seed" / "aws.toml"

# Heavy modules that must be imported only by the commands that use them (about 2.8 s together).
HEAVY = ("pulumi", "pulumi_aws", "pulumi_gcp", "pulumiverse_scaleway", "grpc", "paramiko", "boto3", "botocore",
         "google.cloud", "googleapiclient", "scaleway", "cryptography")


def modules_after(code: str, tmp_path: Path) -> list[str]:
    """Top-level names in sys.modules after running `code` in a fresh interpreter."""
    script = (f"import sys, json\n{code}\n"
              "sys.stdout.flush()\n"
              "print('\\nMODULES=' + json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES="))
    return json.loads(line.removeprefix("MODULES="))


def heavy_in(modules: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in (*HEAVY, *extra))]


def run_cli(args: list[str]) -> str:
    return (f"from benchctl.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n")


def test_importing_the_cli_loads_nothing_heavy(tmp_path: Path) -> None:
    modules = modules_after("import benchctl.cli", tmp_path)
    assert "benchctl.cli" in modules
    assert heavy_in(modules, ("pydantic", "pydantic_core", "rich")) == []


def test_help_loads_nothing_heavy(tmp_path: Path) -> None:
    modules = modules_after(run_cli(["--help"]), tmp_path)
    assert heavy_in(modules, ("pydantic", "pydantic_core", "rich")) == []


def test_validate_loads_no_pulumi_nor_sdk(tmp_path: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text('bench_id = "fast"\nmodel = "m"\n' + SEED_AWS.read_text())
    modules = modules_after(run_cli(["validate", "-c", str(config)]), tmp_path)
    assert "benchctl.config" in modules  # it did validate
    assert heavy_in(modules) == []


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help(name: str) -> None:
    command = main.commands[name]
    assert command.help and len(command.help.strip()) > 20, f"`benchctl {name}` has no help text"
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    assert f"Usage: main {name}" in result.output or f"Usage: benchctl {name}" in result.output
    first_line = command.help.strip().splitlines()[0]
    assert " ".join(first_line.split()) in " ".join(result.output.split())


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_is_documented(name: str) -> None:
    pages = sorted((REPO / "docs").glob("*.md"))
    if (REPO / "README.md").exists():
        pages.append(REPO / "README.md")
    text = "\n".join(p.read_text() for p in pages)
    assert re.search(rf"\bbenchctl {re.escape(name)}\b", text), (
        f"`benchctl {name}` is not mentioned in README.md or docs/*.md")


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in main.commands:
        assert re.search(rf"^\s+{re.escape(name)}\s", result.output, re.M), name


@pytest.mark.parametrize(("alias", "target"), [("up", "create"), ("down", "destroy")])
def test_aliases(alias: str, target: str) -> None:
    ctx = click.Context(main)
    assert main.get_command(ctx, alias) is main.commands[target]
    name, command, _ = main.resolve_command(ctx, [alias])
    assert (name, command) == (target, main.commands[target])
    result = CliRunner().invoke(main, [alias, "--help"])
    assert result.exit_code == 0
    first_line = (main.commands[target].help or "").strip().splitlines()[0]
    assert " ".join(first_line.split()) in " ".join(result.output.split())


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_unknown_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["validate", "--frobnicate"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_config_flag_defaults_to_bench_toml() -> None:
    for name, command in main.commands.items():
        opts = {o.name: o for o in command.params if isinstance(o, click.Option)}
        if "config_path" in opts:
            option = opts["config_path"]
            assert {"--config", "-c"} <= set(option.opts), name
            if option.default is not None:  # optional for some (doctor): then it is bench.toml or nothing
                assert option.default == "bench.toml", name


def test_real_console_script_help(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "benchctl"
    assert script.exists(), "the benchctl console script is missing: run `make setup`"
    proc = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "Usage: benchctl" in proc.stdout
    proc = subprocess.run([str(script), "nope"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    from benchctl import __version__

    assert __version__ in result.output
