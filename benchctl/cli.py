"""The benchctl command line: parse → load config → call one library function → print.

Library errors become click errors here, and only here. Heavy modules (pydantic, pulumi, paramiko,
cloud SDKs) are imported inside the commands, so `benchctl --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
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


# -------------------------------------------------------------------------------------- stack lifecycle

SECRET_OUTPUTS = ("ssh_private_key", "host_key_private")


def public(outputs: dict[str, Any]) -> dict[str, Any]:
    """Stack outputs without the secret ones, for printing."""
    return {k: v for k, v in outputs.items() if k not in SECRET_OUTPUTS}


def pipeline(config_path: str, *, verbose: bool = False, quiet: bool = False) -> Any:
    from benchctl.pipeline import Pipeline
    from benchctl.ui import UI

    return Pipeline(load(config_path, quiet=quiet), UI(verbose=verbose, quiet=quiet))


@main.command()
@config_option
@json_option
@verbose_option
@handle_errors
def create(config_path: str, as_json: bool, verbose: bool) -> None:
    """Create (or update) the stack: the model server and the launcher. Alias: up.

    Prints the stack outputs (hosts, SSH ports, pinned host-key fingerprints, engine URL, expiry).
    """
    outputs = pipeline(config_path, verbose=verbose).create()
    if as_json:
        emit_json(public(outputs))
    else:
        for key, value in public(outputs).items():
            click.echo(f"{key:<30} {value}")


@main.command()
@config_option
@click.option("--offline", is_flag=True, help="Run the stack program under Pulumi mocks: no credentials, no network.")
@json_option
@verbose_option
@handle_errors
def preview(config_path: str, offline: bool, as_json: bool, verbose: bool) -> None:
    """Show what `create` would do: a real `pulumi preview`, or --offline with an hourly cost estimate."""
    cfg = load(config_path, quiet=as_json)
    if offline:
        from benchctl.plan import offline_plan, render_plan

        plan = offline_plan(cfg)
        emit_json(plan) if as_json else click.echo(render_plan(plan))
        return
    from benchctl.automation import Driver
    from benchctl.ui import UI

    ui = UI(verbose=verbose)
    result = Driver(cfg, on_output=ui.pulumi_output, on_event=ui.pulumi_event).preview()
    changes = {str(k.value if hasattr(k, "value") else k): v for k, v in (result.change_summary or {}).items()}
    emit_json({"change_summary": changes}) if as_json else click.echo(
        "planned: " + ", ".join(f"{v} to {k}" for k, v in changes.items()))


@main.command()
@config_option
@json_option
@handle_errors
def connection(config_path: str, as_json: bool) -> None:
    """SSH to every instance of a created stack, verifying the host keys the stack recorded."""
    p = pipeline(config_path, quiet=as_json)
    report = p.connection(p.outputs())
    if as_json:
        emit_json(report)
    if not all(r["ok"] for r in report):
        sys.exit(1)


@main.command()
@config_option
@json_option
@handle_errors
def deploy(config_path: str, as_json: bool) -> None:
    """Ship the load generator to the launcher and wait until the model server answers from it."""
    p = pipeline(config_path, quiet=as_json)
    report = p.deploy(p.outputs())
    if as_json:
        emit_json(report)


@main.command()
@config_option
@click.option("--keep", is_flag=True, help="Keep the stack after the benchmark (destroy it later yourself).")
@json_option
@verbose_option
@handle_errors
def run(config_path: str, keep: bool, as_json: bool, verbose: bool) -> None:
    """Everything: create → connection → deploy → benchmark → results → destroy.

    Ctrl-C stops the benchmark and destroys the stack (unless --keep). Results are saved in
    results/<bench_id>/<run_id>/ and recorded as the stack output `results`.
    """
    p = pipeline(config_path, verbose=verbose)
    outcome = p.run(keep=keep)
    if as_json:
        emit_json({"results_dir": outcome["results_dir"], "headline": outcome["headline"]})
    else:
        from benchctl.report import format_summary_table

        click.echo(format_summary_table(outcome["summary"]))
        click.echo(f"\nfiles: {outcome['results_dir']}")


@main.command()
@config_option
@json_option
@handle_errors
def results(config_path: str, as_json: bool) -> None:
    """Show the last results: the stack output `results`, and the full files when they are here."""
    from benchctl.automation import Driver
    from benchctl.results import headline_table, latest_local, load_summary

    cfg = load(config_path, quiet=as_json)
    outputs = Driver(cfg).outputs()
    head = outputs.get("results")
    directory = Path(head["local_dir"]) if head and head.get("local_dir") else latest_local(cfg.project_dir, cfg.bench_id)
    summary = load_summary(directory) if directory else None
    if head is None and summary is None:
        from benchctl.errors import BenchctlError

        raise BenchctlError(f"no results for {cfg.bench_id!r} yet: run `benchctl run -c {config_path}`")
    if as_json:
        emit_json({"bench_id": cfg.bench_id, "status": outputs.get("status"), "headline": head,
                   "summary": summary, "results_dir": str(directory) if directory else None})
        return
    if summary is not None:
        from benchctl.report import format_summary_table

        click.echo(format_summary_table(summary))
    else:
        click.echo(headline_table(head or {}))
    if directory:
        click.echo(f"\nfiles: {directory}")


@main.command()
@config_option
@click.option("--remove", is_flag=True, help="Also remove the stack and its history from the backend.")
@json_option
@verbose_option
@handle_errors
def destroy(config_path: str, remove: bool, as_json: bool, verbose: bool) -> None:
    """Destroy every resource of the stack. Alias: down. Safe to repeat.

    After a crash, it first clears the operations a killed run left pending and refreshes, then
    destroys, then stops any process the state had lost track of.
    """
    p = pipeline(config_path, verbose=verbose, quiet=as_json)
    report = p.driver.destroy(remove=remove) if as_json else p.destroy()
    if as_json:
        emit_json(report)


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
