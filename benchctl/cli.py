"""The benchctl command line: parse → load config → call one library function → print.

Library errors become click errors here, and only here. Heavy modules (pydantic, pulumi, paramiko,
cloud SDKs) are imported inside the commands, so `benchctl --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
@click.option("--config", "-c", "config_path", default=None, type=click.Path(dir_okay=False),
              help="The bench.toml whose state backend to check (default: ./bench.toml when there is one).")
@json_option
@handle_errors
def doctor(config_path: str | None, as_json: bool) -> None:
    """Show the Pulumi CLI, Python, installed cloud extras, visible credentials and the backend.

    With a config (or PULUMI_BACKEND_URL), also which state backend and secrets provider are in use
    (credentials redacted) and whether the backend answers. Exit 1 when it does not.
    """
    import os

    from benchctl.doctor import backend_report, collect, render

    if config_path is None and (Path("bench.toml").exists() or os.environ.get("PULUMI_BACKEND_URL")):
        config_path = "bench.toml"
    backend = None
    if config_path is not None:
        from benchctl.inventory import base_config

        backend = backend_report(base_config(config_path))
    report = collect(backend)
    if as_json:
        emit_json(report)
    else:
        click.echo(render(report))
    if backend is not None and not backend.get("reachable"):
        sys.exit(1)


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
@click.argument("runs", nargs=-1, required=True)
@json_option
@handle_errors
def compare(runs: tuple[str, ...], as_json: bool) -> None:
    """Compare runs side by side, with the cost of a million output tokens.

    Each RUN is a results directory (results/<bench_id>/<run_id>) or a bench.toml (its latest run):

    \b
      benchctl compare -- aws-g5.toml gcp-l4.toml results/local-demo/20261203T165211Z
    """
    from benchctl.compare import render, resolve, rows

    table = rows([resolve(r) for r in runs])
    emit_json(table) if as_json else click.echo(render(table))


@main.command()
@config_option
@json_option
@verbose_option
@handle_errors
def refresh(config_path: str, as_json: bool, verbose: bool) -> None:
    """Compare the state with reality (`pulumi refresh`): a dead instance or process leaves the state.

    Run `benchctl create` afterwards to bring back what is gone.
    """
    from benchctl.automation import Driver
    from benchctl.ui import UI

    cfg = load(config_path, quiet=as_json)
    ui = UI(verbose=verbose, quiet=as_json)
    ui.step("refresh", f"stack {cfg.bench_id!r}")
    changes = Driver(cfg, on_output=ui.pulumi_output, on_event=ui.pulumi_event).refresh()
    if as_json:
        emit_json({"bench_id": cfg.bench_id, "changes": changes})
    elif not changes:
        ui.info("the state matches reality")


@main.command()
@config_option
@click.option("--remove", is_flag=True, help="Also remove the stack and its history from the backend.")
@click.option("--expired", is_flag=True,
              help="Destroy every stack of the backend past its expiry (a cron-able sweep; no bench.toml needed).")
@json_option
@verbose_option
@handle_errors
def destroy(config_path: str, remove: bool, expired: bool, as_json: bool, verbose: bool) -> None:
    """Destroy every resource of the stack. Alias: down. Safe to repeat.

    After a crash, it first clears a lock left by a dead benchctl on this machine and the
    operations a killed run left pending, refreshes, destroys, then stops any process the state
    had lost track of.

    \b
    With --expired, every stack of the backend past its expires_at that still has resources
    (see `benchctl ls --expired`); cloud stacks need that cloud's credentials in the environment:
      PULUMI_BACKEND_URL=s3://team-state PULUMI_CONFIG_PASSPHRASE_FILE=~/.benchctl-pass benchctl destroy --expired
    """
    if expired:
        _destroy_expired(config_path, remove=remove, as_json=as_json, verbose=verbose)
        return
    p = pipeline(config_path, verbose=verbose, quiet=as_json)
    report = p.driver.destroy(remove=remove) if as_json else p.destroy()
    if as_json:
        emit_json(report)


def _destroy_expired(config_path: str, *, remove: bool, as_json: bool, verbose: bool) -> None:
    from benchctl.errors import UsageError
    from benchctl.inventory import base_config, destroy_expired
    from benchctl.ui import UI

    if remove:
        raise UsageError("--remove cannot be combined with --expired (the sweep keeps each stack's tombstone)")
    ui = UI(verbose=verbose, quiet=as_json)
    reports = destroy_expired(base_config(config_path), on_stack=lambda s: ui.step(
        "destroy", f"stack {s.name!r} ({s.provider}, owner {s.owner}) expired at {s.expires_at}"),
        on_output=ui.pulumi_output, on_event=ui.pulumi_event, on_notice=ui.warn)
    if as_json:
        emit_json(reports)
    elif not reports:
        click.echo("no expired stack with resources left")
    for r in reports:
        if r["error"]:
            click.secho(f"error: {r['stack']}: {r['error']}", fg="red", err=True)
        elif not as_json:
            click.echo(f"destroyed {r['stack']}")
    if any(r["error"] for r in reports):
        sys.exit(1)


@main.command("ls")
@config_option
@click.option("--expired", is_flag=True, help="Only the stacks past their expiry that still have resources.")
@json_option
@handle_errors
def list_stacks(config_path: str, expired: bool, as_json: bool) -> None:
    """List every benchctl stack in the state backend the team shares.

    Per stack: provider, instance types, status (running, failed when its last update failed,
    destroyed), owner, age, expiry, the headline of its last results, and who holds its lock.
    Works without a bench.toml: the backend is then PULUMI_BACKEND_URL, or ./.benchctl/state.

    \b
    Examples:
      benchctl ls
      benchctl ls --expired --json
    """
    from benchctl.inventory import backend_stacks, base_config, render_table

    stacks = backend_stacks(base_config(config_path), expired_only=expired)
    if as_json:
        emit_json([s.to_json() for s in stacks])
    else:
        click.echo(render_table(stacks))


@main.command()
@config_option
@click.option("--yes", "-y", is_flag=True, help="Clear the lock without asking.")
@click.option("--force", is_flag=True,
              help="Clear it even though its process still runs on this machine (that process is not stopped).")
@handle_errors
def cancel(config_path: str, yes: bool, force: bool) -> None:
    """Clear the lock a killed benchctl left on the stack, after showing who held it.

    Pulumi locks a stack while an update runs; a process killed with SIGKILL leaves the lock
    behind, and every later command then fails with "locked by". This shows each lock's
    user@host, pid and time, and whether that process still runs (when it ran on this machine).
    It refuses a lock whose process still runs unless --force, and asks for confirmation unless
    --yes (required when stdin is not a terminal). Exit 0 when there is no lock.
    """
    from benchctl.automation import Driver
    from benchctl.errors import BenchctlError, UsageError
    from benchctl.locks import stack_locks

    driver = Driver(load(config_path))
    if not driver.exists():
        click.echo(f"stack {driver.name!r} does not exist: no lock to clear")
        return
    holders = stack_locks(driver)
    if holders == []:
        click.echo(f"stack {driver.name!r} is not locked")
        return
    for h in holders or []:
        click.echo(f"stack {driver.name!r} is locked by {h.describe()}: {h.state()}")
    if holders is None:
        click.echo(f"the {driver.backend.kind} backend does not show who holds a lock: this clears any lock")
    if any(h.alive() for h in holders or []) and not force:
        raise BenchctlError("that process still runs and holds the stack: let it finish or stop it "
                            "(clearing its lock would let two updates corrupt the state), or pass --force")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("not clearing the lock without confirmation: stdin is not a terminal; pass --yes")
        click.confirm(f"clear the lock on stack {driver.name!r}?", abort=True)
    driver.cancel()
    click.echo(f"lock cleared on stack {driver.name!r}")


# -------------------------------------------------------------------------------------- benchmark


@main.command()
@click.option("--target", required=True,
              help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000 (with or without /v1).")
@click.option("--api", type=click.Choice(["chat", "completions"]), default="chat", show_default=True)
@click.option("--model", default=None, help="Model name. Default: the first id of GET /v1/models.")
@click.option("--api-key", envvar="BENCHCTL_API_KEY", default=None, show_envvar=True,
              help="Bearer token (OPENAI_API_KEY is also read).")
@click.option("--concurrency", default=None,
              help="Requests in flight, or a sweep: '1,4,16,64'. Default 1,4,16; with --rate, the in-flight cap "
                   "(default 1024).")
@click.option("--rate", default=None, help="Open-loop arrival rate(s) in requests/s, one point each: '5,10'.")
@click.option("--arrival", type=click.Choice(["constant", "poisson"]), default="poisson", show_default=True,
              help="Arrival process for --rate.")
@click.option("--requests", "n_requests", type=int, default=None,
              help="Measured requests per point. Default 200, or unbounded with --duration.")
@click.option("--duration", type=float, default=None, help="Measured seconds per point.")
@click.option("--warmup", type=int, default=8, show_default=True, help="Warm-up requests per point (not measured).")
@click.option("--input-tokens", type=int, default=128, show_default=True,
              help="Synthetic prompt length, calibrated from the server's usage.prompt_tokens.")
@click.option("--output-tokens", type=int, default=64, show_default=True, help="Output length asked for.")
@click.option("--dataset", default=None, help="Prompts from a JSONL file or a ShareGPT JSON file.")
@click.option("--slo", default=None, help="Goodput SLOs in ms: 'ttft_ms=500,tpot_ms=50,itl_ms=..,e2e_ms=..'.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Per-request timeout, seconds.")
@click.option("--max-error-rate", type=float, default=0.5, show_default=True,
              help="Stop a point (and fail) when more than this share of requests fail.")
@click.option("--engine", default=None, help="Engine hint (vllm, sglang, tgi, ollama, llamacpp, openai).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", default=None, help="Results directory. Default: results/bench/<timestamp>.")
@click.option("--strict", is_flag=True, help="Exit 1 when the client itself was the bottleneck.")
@json_option
@click.option("--quiet", is_flag=True, help="No progress and no table; only warnings and errors.")
@handle_errors
def bench(target: str, api: str, model: str | None, api_key: str | None, concurrency: str | None,
          rate: str | None, arrival: str, n_requests: int | None, duration: float | None, warmup: int,
          input_tokens: int, output_tokens: int, dataset: str | None, slo: str | None, timeout: float,
          max_error_rate: float, engine: str | None, seed: int, out_dir: str | None, strict: bool,
          as_json: bool, quiet: bool) -> None:
    """Benchmark an existing OpenAI-compatible server (vLLM, SGLang, TGI, Ollama, llama.cpp).

    Writes summary.json, requests.jsonl and progress.jsonl into --out, and prints a table.
    Exit 1 when the benchmark failed (error threshold, unreachable server, client-bound with --strict).

    \b
    Examples:
      benchctl bench --target http://127.0.0.1:8000 --concurrency 1,4,16,64 --requests 200
      benchctl bench --target http://gpu:8000/v1 --rate 2,4,8 --arrival poisson --duration 60 \\
          --slo ttft_ms=500,tpot_ms=50
    """
    import datetime as dt

    from benchctl.errors import BenchmarkError, UsageError
    from benchctl.load.runner import run
    from benchctl.load.spec import LoadSpec, SpecError, parse_float_list, parse_int_list, parse_slo
    from benchctl.report import format_summary_table

    try:
        rates = parse_float_list(rate, "--rate") if rate is not None else None
        conc = parse_int_list(concurrency, "--concurrency") if concurrency is not None else (
            [1024] if rates else [1, 4, 16])
        spec = LoadSpec(
            target=target, model=model, api_key=api_key, api=api, concurrency=conc, rate=rates, arrival=arrival,
            requests=n_requests if (n_requests is not None or duration is not None) else 200,
            duration_s=duration, warmup=warmup, input_tokens=input_tokens, output_tokens=output_tokens,
            dataset=dataset, slo=parse_slo(slo) if slo else {}, timeout_s=timeout,
            max_error_rate=max_error_rate, seed=seed, strict=strict, engine=engine)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    out = Path(out_dir) if out_dir else Path("results/bench") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    show = _bench_progress() if not (as_json or quiet) else None
    try:
        summary = run(spec, out, show)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if show is not None:
            show({"phase": "end"})
    for w in summary["warnings"]:
        click.secho(f"WARNING: {w}", fg="yellow", bold=True, err=True)
    if as_json:
        emit_json(summary)
    elif not quiet and summary["points"]:
        click.echo(format_summary_table(summary))
    click.echo(f"results: {out}", err=True)
    if summary["status"] != "ok":
        raise BenchmarkError("; ".join(summary["failures"]) or "the benchmark failed")


def _bench_progress() -> Callable[[dict[str, Any]], None]:
    """A live one-line display on a TTY (redrawn each update); a line every 5 s otherwise."""
    import time

    tty = sys.stderr.isatty()
    state = {"last": 0.0, "drawn": False}

    def show(line: dict[str, Any]) -> None:
        if line.get("phase") == "end":
            if state["drawn"]:
                click.echo("", err=True)
            return
        now = time.monotonic()
        if not tty and line["phase"] != "done" and now - state["last"] < 5.0:
            return
        state["last"] = now
        total = line.get("total")
        text = (f"[{line['phase']}] point {line['point'] + 1}/{line['points']}  "
                f"{line['done']}{'/' + str(total) if total else ''} requests  {line['rps']:.1f} req/s  "
                f"{line['errors']} errors")
        if tty:
            click.echo(f"\r\033[K{text}", nl=False, err=True)
            state["drawn"] = True
        else:
            click.echo(text, err=True)

    return show


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, help="0 picks a free port (printed).")
@click.option("--ttft-base-ms", type=float, default=10.0, show_default=True)
@click.option("--prefill-ms-per-1k", type=float, default=20.0, show_default=True, help="Prefill ms per 1k prompt tokens.")
@click.option("--itl-ms", type=float, default=5.0, show_default=True, help="Decode ms per token.")
@click.option("--itl-ms-per-running-seq", type=float, default=0.05, show_default=True,
              help="Extra decode ms per token for each running sequence.")
@click.option("--max-running", type=int, default=256, show_default=True, help="Running sequences; more wait in a FIFO.")
@click.option("--tokens-per-chunk", type=int, default=1, show_default=True)
@click.option("--fail-rate", type=float, default=0.0, show_default=True, help="Share of requests answered with 500.")
@click.option("--hang-rate", type=float, default=0.0, show_default=True, help="Share of requests never answered.")
@click.option("--model", default="benchctl-sim", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--truth-log", default=None, help="Append one JSON line of server-side timing truth per request.")
@handle_errors
def simulate(host: str, port: int, ttft_base_ms: float, prefill_ms_per_1k: float, itl_ms: float,
             itl_ms_per_running_seq: float, max_running: int, tokens_per_chunk: int, fail_rate: float,
             hang_rate: float, model: str, seed: int, truth_log: str | None) -> None:
    """Run the simulated engine: an OpenAI-compatible streaming server with a timing model.

    TTFT = ttft-base-ms + prefill-ms-per-1k x prompt tokens / 1000; each next token takes
    itl-ms + itl-ms-per-running-seq x running sequences. Stops on Ctrl-C.

    \b
    Example:
      benchctl simulate --port 8000 --itl-ms 12 --ttft-base-ms 80
    """
    from benchctl.errors import BenchctlError, UsageError
    from benchctl.simulator import SimConfig, serve

    cfg = SimConfig(ttft_base_ms, prefill_ms_per_1k, itl_ms, itl_ms_per_running_seq, max_running, tokens_per_chunk,
                    fail_rate, hang_rate, model, seed)
    try:
        cfg.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        serve(host, port, cfg, truth_log, announce=click.echo)
    except OSError as exc:
        raise BenchctlError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _not_yet(name: str) -> Exception:
    from benchctl.errors import NotAvailableError

    return NotAvailableError(f"`benchctl {name}` is not available yet in this build")


# -------------------------------------------------------------------------------------- clouds


@main.command()
@config_option
@json_option
@handle_errors
def creds(config_path: str, as_json: bool) -> None:
    """Check the configured cloud's credentials: identity, account/project, region, and fixes.

    AWS asks STS who the credentials belong to; GCP reads the credentials file (not verified
    online); Scaleway looks the API key up in IAM when the API can be reached. Exit code 1 when
    something is wrong. Secrets are never printed.

    \b
      benchctl creds -c examples/aws-g4dn.toml
    """
    from benchctl.creds import check

    report = check(load(config_path, quiet=as_json))
    if as_json:
        emit_json(report)
    else:
        state = "ok" if report["ok"] else "NOT OK"
        click.echo(f"{report['provider']}: {state} ({'verified' if report['verified'] else 'unverified'})")
        for key in ("identity", "account", "project", "region"):
            click.echo(f"  {key:<9} {report[key] or '-'}")
        for note in report["notes"]:
            click.echo(f"  note: {note}")
        for problem in report["problems"]:
            click.secho(f"  problem: {problem}", fg="red")
        for fix in report["fixes"]:
            click.echo(f"  fix: {fix}")
    if not report["ok"]:
        sys.exit(1)


@main.command()
@config_option
@json_option
@handle_errors
def plan(config_path: str, as_json: bool) -> None:
    """List what `create` would make and its estimated hourly cost, with no credentials and no network.

    Runs the real stack program under Pulumi mocks (same as `preview --offline`). Secrets show as
    "[secret]"; prices come from a dated on-demand price table (benchctl/pricing.py).

    \b
      benchctl plan -c examples/gcp-t4.toml --json
    """
    from benchctl.plan import offline_plan, render_plan

    result = offline_plan(load(config_path, quiet=as_json))
    emit_json(result) if as_json else click.echo(render_plan(result))
