"""The benchctl command line: parse → load config → call one library function → print.

Library errors become click errors here, and only here. Heavy modules (pydantic, pulumi, paramiko,
cloud SDKs) are imported inside the commands, so `benchctl --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

if TYPE_CHECKING:
    from benchctl.config import BenchConfig

F = TypeVar("F", bound=Callable[..., Any])


class AliasedGroup(click.Group):
    """`up` is `create`, `down` is `destroy` (the seed's names and Pulumi's)."""

    ALIASES = {"up": "create", "down": "destroy"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(cmd_name, cmd_name))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        _, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else None), cmd, rest


def handle_errors(fn: F) -> F:
    """Turn benchctl's errors into a one-line message and its exit code (1 failed, 2 bad input)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from benchctl.errors import BenchctlError

        try:
            return fn(*args, **kwargs)
        except BenchctlError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def config_option(fn: F) -> F:
    return click.option(
        "--config", "-c", "config_path", default="bench.toml", show_default=True,
        type=click.Path(dir_okay=True), help="The bench.toml to use.",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(fn)


def verbose_option(fn: F) -> F:
    return click.option("--verbose", "-v", is_flag=True, help="Stream Pulumi's raw output lines.")(fn)


def load(config_path: str, *, quiet: bool = False) -> BenchConfig:
    from benchctl.config import load_config

    cfg = load_config(config_path)
    if not quiet:
        for w in cfg.warnings:
            click.secho(f"warning: {w}", fg="yellow", err=True)
    return cfg


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


@click.group(cls=AliasedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="benchctl")
def main() -> None:
    """benchctl: benchmark LLM inference engines on GPUs provisioned as code.

    From one bench.toml, benchctl creates a GPU model server and a CPU launcher (AWS, GCP,
    Scaleway, or both on this machine with provider = "local"), runs a load test from the launcher
    over SSH, records the results as Pulumi stack outputs and files, and destroys everything.

    \b
    Quick start (no cloud account):
      benchctl run -c examples/local.toml
    """


# -------------------------------------------------------------------------------------- config


@main.command()
@config_option
@json_option
@handle_errors
def validate(config_path: str, as_json: bool) -> None:
    """Check a bench.toml without creating anything.

    Exit code 2 and one line per problem (file, key path, what was expected) when it is wrong.
    """
    cfg = load(config_path, quiet=as_json)
    summary = {
        "file": str(config_path),
        "bench_id": cfg.bench_id,
        "provider": cfg.provider,
        "inference_engine": cfg.engine_name,
        "model": cfg.model_name,
        "warnings": cfg.warnings,
    }
    if as_json:
        emit_json({"valid": True, **summary})
    else:
        click.echo(f"{config_path}: valid ({cfg.provider}, {cfg.engine_name}, model {cfg.model_name})")


@main.command()
@json_option
@handle_errors
def doctor(as_json: bool) -> None:
    """Show the Pulumi CLI, Python, installed cloud extras, visible credentials and the backend."""
    from benchctl.doctor import collect, render

    report = collect()
    if as_json:
        emit_json(report)
    else:
        click.echo(render(report))


# -------------------------------------------------------------------------------------- benchmark


@main.command()
@click.option("--target", required=True, help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000")
@handle_errors
def bench(target: str) -> None:
    """Benchmark an existing OpenAI-compatible server (vLLM, SGLang, TGI, Ollama, llama.cpp)."""
    raise _not_yet("bench")


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
@handle_errors
def simulate(port: int) -> None:
    """Run the simulated engine: an OpenAI-compatible streaming server with a timing model."""
    raise _not_yet("simulate")


def _not_yet(name: str) -> Exception:
    from benchctl.errors import NotAvailableError

    return NotAvailableError(f"`benchctl {name}` is not available yet in this build")
