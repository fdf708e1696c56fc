"""Fault injection against the real engine, real sshd and the simulator: nothing may leak.

Every scenario ends with the same checks: no process of the stack is alive, the stack holds no
resource, and the results of work that completed are still on disk. Signals go to the whole process
group of `benchctl run` (benchctl, the Pulumi CLI, the dynamic-provider plugin), as a terminal's
Ctrl-C does; SIGKILL to the group is a crash of the operator's machine short of a reboot.

`BENCHCTL_FAULT_TRIALS=N` repeats each scenario N times (docs/reliability.md reports such a run);
`BENCHCTL_FAULT_REPORT=FILE` appends one JSON line per scenario outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Project, Watched, stack_processes

pytestmark = pytest.mark.reliability

TRIALS = range(int(os.environ.get("BENCHCTL_FAULT_TRIALS", "1")))
PHASES = ("create", "connection", "deploy", "benchmark", "results", "destroy")

CONFIG = """
bench_id = "{bench_id}"
provider = "local"
inference_engine = "simulator"
model = "sim"

[engine]
args = {engine_args}

[simulator]
ttft_base_ms = 5.0
itl_ms = {itl}

[benchmark]
concurrency = [2, 4]
requests = {requests}
warmup = 1
input_tokens = 16
output_tokens = 16
timeout_s = {timeout}
max_error_rate = 0.5
"""


def configure(project: Project, bench_id: str, *, requests: int = 30, itl: float = 1.0,
              engine_args: tuple[str, ...] = (), timeout: float = 30.0) -> None:
    project.write_config(CONFIG.format(bench_id=bench_id, requests=requests, itl=itl, timeout=timeout,
                                       engine_args=json.dumps(list(engine_args))))


def stack_resources(project: Project) -> list[str]:
    """Resource types left in the stack's state (the file backend, read as Pulumi writes it)."""
    found = []
    for path in (project.root / ".benchctl" / "state" / ".pulumi" / "stacks").rglob("*.json"):
        deployment = json.loads(path.read_text()).get("checkpoint", {}).get("latest") or {}
        found += [r["type"] for r in deployment.get("resources") or [] if r["type"] != "pulumi:pulumi:Stack"]
        found += [f"pending:{p['type']}" for p in deployment.get("pending_operations") or []]
    return found


def saved_summaries(project: Project, bench_id: str) -> list[Path]:
    return sorted((project.root / "results" / bench_id).glob("*/summary.json"))


def report(scenario: str, outcome: dict[str, object]) -> None:
    path = os.environ.get("BENCHCTL_FAULT_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"scenario": scenario, **outcome}) + "\n")


def assert_clean(project: Project, scenario: str, *, results_expected: bool, bench_id: str) -> None:
    leaks = stack_processes(project.root)
    resources = stack_resources(project)
    summaries = saved_summaries(project, bench_id)
    report(scenario, {"leaked_processes": len(leaks), "leaked_resources": len(resources),
                      "results_kept": bool(summaries) if results_expected else None})
    assert leaks == [], f"{scenario}: processes left: {leaks}"
    assert resources == [], f"{scenario}: resources left in state: {resources}"
    if results_expected:
        assert summaries, f"{scenario}: the completed benchmark's results were lost"


def signal_group(proc: Watched, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@pytest.mark.parametrize("trial", TRIALS)
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_signal_at_each_phase(project: Project, sig: signal.Signals, phase: str, trial: int) -> None:
    bench_id = f"sig-{sig.name.lower()[3:]}-{phase}"
    configure(project, bench_id, requests=40)
    proc = project.popen("run")
    try:
        proc.wait_for(f"==> {phase}", timeout=180)
        signal_group(proc, sig)
        code = proc.finish(240)
    finally:
        proc.kill_if_running()

    if sig == signal.SIGINT:
        # benchctl tears down by itself. During `destroy` it ignores Ctrl-C and finishes the job.
        assert code in (130, 0), proc.output
        assert "Traceback" not in proc.output
    else:
        recovered = project.cli("destroy")
        assert recovered.returncode == 0, recovered.stderr
    # Results exist once the benchmark's files were fetched, i.e. when `results` started.
    assert_clean(project, f"{sig.name} at {phase}", results_expected=phase in ("results", "destroy"),
                 bench_id=bench_id)


@pytest.mark.parametrize("trial", TRIALS)
def test_ssh_cut_mid_benchmark_reattaches(project: Project, trial: int) -> None:
    configure(project, "ssh-cut", requests=150, itl=2.0)
    proc = project.popen("run")
    try:
        proc.wait_for("point 1/2", timeout=180)
        cut = cut_ssh_sessions(project)
        assert cut, "no SSH session to cut"
        code = proc.finish(300)
    finally:
        proc.kill_if_running()
    assert code == 0, proc.output
    assert "reattached to the launcher" in proc.output
    summary = json.loads(saved_summaries(project, "ssh-cut")[-1].read_text())
    assert [p["requests"]["completed"] for p in summary["points"]] == [150, 150]
    assert_clean(project, "SSH cut mid-benchmark", results_expected=True, bench_id="ssh-cut")


def cut_ssh_sessions(project: Project) -> list[int]:
    """Kill the per-connection sshd processes (not the listener): the network drops, the host stays."""
    listeners = [pid for pid in stack_processes(project.root)
                 if "sshd" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid in listeners and "sshd" in cmd:
            os.kill(int(proc.name), signal.SIGKILL)
            killed.append(int(proc.name))
    time.sleep(0.2)
    return killed


@pytest.mark.parametrize("trial", TRIALS)
def test_server_failing_most_requests_ends_by_error_threshold(project: Project, trial: int) -> None:
    configure(project, "many-500", requests=200, engine_args=("--fail-rate", "0.8"))
    result = project.cli("run", timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "max_error_rate" in result.stderr  # says why it stopped
    summary = json.loads(saved_summaries(project, "many-500")[-1].read_text())
    first = summary["points"][0]["requests"]
    assert first["failed"] > first["completed"] > 0
    assert first["completed"] + first["failed"] < 200, "the run should stop early at the error threshold"
    assert_clean(project, "server answers 500 (80%)", results_expected=True, bench_id="many-500")


@pytest.mark.parametrize("trial", TRIALS)
def test_hanging_server_counts_timeouts(project: Project, trial: int) -> None:
    configure(project, "hang", requests=60, engine_args=("--hang-rate", "0.8"), timeout=1.0)
    result = project.cli("run", timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(saved_summaries(project, "hang")[-1].read_text())
    first = summary["points"][0]["requests"]
    assert first["timeouts"] > 0, first  # counted, never silently dropped
    assert first["completed"] + first["failed"] < 60, "the run should stop early at the error threshold"
    assert_clean(project, "server hangs", results_expected=True, bench_id="hang")


@pytest.mark.parametrize("trial", TRIALS)
def test_unwritable_results_dir_is_a_clear_error_and_stack_is_destroyed(project: Project, trial: int) -> None:
    configure(project, "no-results", requests=5)
    (project.root / "results").write_text("a file where the results folder should be\n")
    result = project.cli("run", timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "results" in result.stderr.splitlines()[-1]
    assert_clean(project, "results dir unwritable", results_expected=False, bench_id="no-results")
