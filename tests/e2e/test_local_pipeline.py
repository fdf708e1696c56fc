"""The whole pipeline on one machine: real Pulumi engine, real sshd, real simulator, real SSH.

create → connection → deploy → run → results → destroy, then checks that no process the stack
started is alive, that the stack holds no resource, and that no secret sits in the state in plain
text. Also: SIGKILL in the middle of the benchmark, then `destroy` leaves nothing; SIGINT triggers the
automatic teardown.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import Project, sshd_available, stack_processes

pytestmark = pytest.mark.e2e

CONFIG = """
bench_id = "{bench_id}"
provider = "local"
inference_engine = "simulator"
model = "sim-model"

[simulator]
ttft_base_ms = {ttft}
itl_ms = {itl}

[benchmark]
concurrency = [1, 4]
requests = {requests}
warmup = 2
input_tokens = 32
output_tokens = 16
"""


def write(project: Project, bench_id: str, *, requests: int = 12, ttft: float = 5.0, itl: float = 1.0) -> Path:
    return project.write_config(CONFIG.format(bench_id=bench_id, requests=requests, ttft=ttft, itl=itl))


def automation_stack(project: Project, bench_id: str):  # type: ignore[no-untyped-def]
    """The same stack, opened independently through the Automation API (as a Pulumi user would)."""
    from pulumi import automation as auto

    from benchctl import pulumi_cli

    state = project.root / ".benchctl"
    url = f"file://{state / 'state'}"
    env = {"PULUMI_BACKEND_URL": url, "PULUMI_CONFIG_PASSPHRASE_FILE": str(state / "passphrase"),
           "PULUMI_HOME": project.env["PULUMI_HOME"], "PULUMI_SKIP_UPDATE_CHECK": "true"}
    opts = auto.LocalWorkspaceOptions(
        env_vars=env, pulumi_command=auto.PulumiCommand(root=str(pulumi_cli.require().root)),
        project_settings=auto.ProjectSettings(name="benchctl", runtime="python", backend=auto.ProjectBackend(url)),
    )
    return auto.select_stack(stack_name=bench_id, project_name="benchctl", program=lambda: None, opts=opts)


def test_create_connection_deploy_run_results_destroy(project: Project) -> None:
    if not sshd_available():
        pytest.fail("sshd is required for the end-to-end test: .ci/run installs openssh-server")
    write(project, "e2e-full")

    created = project.cli("create", "--json", check=True)
    outputs = json.loads(created.stdout)
    assert outputs["status"] == "running"
    assert outputs["launcher_ssh_port"] > 0 and outputs["launcher_host"] == "127.0.0.1"
    assert outputs["launcher_host_key_fingerprint"].startswith("SHA256:")
    assert "ssh_private_key" not in outputs  # secrets never printed
    assert len(stack_processes(project.root)) == 2  # the model server and the launcher's sshd

    conn = json.loads(project.cli("connection", "--json", check=True).stdout)
    assert {c["role"] for c in conn} == {"server", "launcher"}
    assert all(c["ok"] and c["transport"] == "ssh" for c in conn)

    deployed = json.loads(project.cli("deploy", "--json", check=True).stdout)
    assert deployed["models"] == ["sim-model"]

    ran = project.cli("run", "--keep", "--json", check=True)
    outcome = json.loads(ran.stdout)
    results_dir = Path(outcome["results_dir"])
    summary = json.loads((results_dir / "summary.json").read_text())
    assert [p["concurrency"] for p in summary["points"]] == [1, 4]
    for point in summary["points"]:
        assert point["requests"]["completed"] == 12 and point["requests"]["failed"] == 0
    lines = (results_dir / "requests.jsonl").read_text().splitlines()
    assert len(lines) >= 24
    run_info = json.loads((results_dir / "run.json").read_text())
    assert (run_info["provider"], run_info["engine"], run_info["gpu_hourly_usd"]) == ("local", "simulator", None)

    # The results are stack outputs, readable with the Automation API by anyone with the backend.
    stack = automation_stack(project, "e2e-full")
    outs = stack.outputs()
    recorded = outs["results"].value
    assert recorded["run_id"] == results_dir.name
    assert [p["completed"] for p in recorded["points"]] == [12, 12]
    assert recorded["points"][1]["output_tokens_per_s"] > 0
    assert outs["ssh_private_key"].secret
    private_key = outs["ssh_private_key"].value
    host_key = outs["host_key_private"].value

    shown = json.loads(project.cli("results", "--json", check=True).stdout)
    assert shown["headline"]["run_id"] == results_dir.name
    assert shown["summary"]["points"][0]["requests"]["completed"] == 12

    destroyed = project.cli("destroy", check=True)
    assert "destroy" in destroyed.stderr
    assert stack_processes(project.root) == []
    resources = stack.export_stack().deployment.get("resources") or []
    assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []
    assert stack.outputs()["status"].value == "destroyed"

    # Idempotent: a second destroy succeeds and changes nothing.
    again = project.cli("destroy", check=True)
    assert again.returncode == 0

    # No secret in plain text anywhere in the state or the workspace.
    passphrase = (project.root / ".benchctl" / "passphrase").read_text()
    needles = [private_key.splitlines()[1], host_key.splitlines()[1], passphrase]
    for path in (project.root / ".benchctl" / "state").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for needle in needles:
                assert needle not in text, f"secret found in {path}"


def test_sigkill_mid_benchmark_then_destroy_leaves_nothing(project: Project) -> None:
    write(project, "e2e-kill", requests=4000, ttft=20.0, itl=5.0)
    proc = project.popen("run")
    try:
        proc.wait_for("point 1/2")
        assert len(stack_processes(project.root)) >= 3  # server, sshd, and the runner on the launcher
        os.kill(proc.pid, signal.SIGKILL)
        proc.finish(30)
    finally:
        proc.kill_if_running()
    assert stack_processes(project.root), "the stack's processes should outlive a SIGKILLed benchctl"

    out = project.cli("destroy", check=True)
    assert stack_processes(project.root) == [], out.stderr
    stack = automation_stack(project, "e2e-kill")
    resources = stack.export_stack().deployment.get("resources") or []
    assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []


def test_sigint_tears_everything_down(project: Project) -> None:
    write(project, "e2e-int", requests=4000, ttft=20.0, itl=5.0)
    proc = project.popen("run")
    try:
        proc.wait_for("point 1/2")
        os.kill(proc.pid, signal.SIGINT)
        code = proc.finish(180)
    finally:
        proc.kill_if_running()
    assert code == 130, proc.output
    assert "tearing everything down" in proc.output
    assert stack_processes(project.root) == []
    stack = automation_stack(project, "e2e-int")
    assert stack.outputs()["status"].value == "destroyed"


def test_refresh_notices_a_dead_server_and_create_brings_it_back(project: Project) -> None:
    write(project, "e2e-refresh")
    first = json.loads(project.cli("create", "--json", check=True).stdout)
    server_pid = int((project.root / ".benchctl" / "run" / "e2e-refresh" / "model-server.pid").read_text().split()[0])
    os.kill(server_pid, signal.SIGKILL)

    refreshed = json.loads(project.cli("refresh", "--json", check=True).stdout)
    assert refreshed["changes"].get("delete") == 1  # the dead model server left the state

    again = json.loads(project.cli("create", "--json", check=True).stdout)
    assert again["engine_url"] != first["engine_url"]  # a new server, on a new port
    assert again["launcher_ssh_port"] == first["launcher_ssh_port"]  # the live launcher was kept
    assert json.loads(project.cli("deploy", "--json", check=True).stdout)["models"] == ["sim-model"]


def test_without_sshd_the_launcher_runs_locally_and_says_so(project: Project) -> None:
    project.write_config(CONFIG.format(bench_id="e2e-nossh", requests=6, ttft=2.0, itl=0.5)
                         + '\n[local]\nssh = "none"\n')
    ran = project.cli("run", "--json", check=True)
    assert "launcher step runs as a local process" in ran.stderr
    outcome = json.loads(ran.stdout)
    summary = json.loads((Path(outcome["results_dir"]) / "summary.json").read_text())
    assert [p["requests"]["completed"] for p in summary["points"]] == [6, 6]
    assert stack_processes(project.root) == []
