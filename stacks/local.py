"""The embedded default: the model server and the launcher as managed processes on this machine.

Each "instance" is a `LocalProcess`, a Pulumi dynamic resource: `up` starts it, `destroy` stops its
whole process group, and `refresh` notices when it died (the resource then leaves the state). The
launcher is reached over SSH, exactly as on a cloud: the stack starts a private OpenSSH `sshd` on
127.0.0.1 with the stack's own host key, authorized key and config (never the system's sshd). When
`sshd` is not installed, the launcher step runs as a local process instead, and the outputs say so
(`launcher_ssh_port = 0`).

Every process also leaves a pidfile in the stack's run directory, so that a benchctl killed in the
middle of `up` (a process started but not yet recorded in the state) still cannot leak it: `destroy`
sweeps that directory (`sweep_orphans`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider

from stacks.common import Endpoint, StackContext, export_outputs

STOP_GRACE_S = 5.0


# ------------------------------------------------------------------------------------------ processes


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat): guards against pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is dead for our purposes
        return None
    return fields[19]


def alive(pid: int, start_time: str | None) -> bool:
    return pid > 0 and start_time is not None and _start_time(pid) == start_time


def stop_process_group(pid: int, start_time: str | None, grace_s: float = STOP_GRACE_S) -> bool:
    """SIGTERM the process group, then SIGKILL after `grace_s`. Returns True if something was stopped."""
    if not alive(pid, start_time):
        return False
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):  # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
            if not alive(pid, start_time):
                return True
            time.sleep(0.05)
    return not alive(pid, start_time)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_ready(ready: dict[str, Any], port: int, pid: int, start: str | None, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid, start):
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"process exited during start-up; last log lines:\n{tail}")
        try:
            if ready.get("kind") == "http":
                with urllib.request.urlopen(ready["url"].replace("{port}", str(port)), timeout=2) as r:
                    if r.status == 200:
                        return
            else:
                with socket.create_connection((ready.get("host", "127.0.0.1"), port), timeout=1):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout:.0f}s (see {log})")


def _digest(props: dict[str, Any]) -> str:
    """A stable digest of the inputs that may be secret, so a diff can see a change without storing them."""
    import hashlib
    import json

    blob = json.dumps({"env": props.get("env") or {}, "files": props.get("files") or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def kill_processes_under(directory: Path) -> list[str]:
    """Kill every process whose working directory is inside `directory`.

    This is what terminating a cloud instance does to the programs on it: the launcher's detached
    benchmark runs in its work dir, so stopping the local launcher must stop it too.
    """
    root = str(directory.resolve())
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            pid = int(proc.name)
            if stop_process_group(pid, _start_time(pid), grace_s=2.0):
                killed.append(f"pid {pid} in {cwd}")
    return killed


def sweep_orphans(run_dir: Path) -> list[str]:
    """Stop every process a stack left pidfiles for (after a crash mid-`up`), and anything still
    running inside its directory; returns what was stopped."""
    stopped = kill_processes_under(run_dir) if run_dir.is_dir() else []
    for pidfile in sorted(run_dir.glob("*.pid")) if run_dir.is_dir() else []:
        try:
            pid_text, start = pidfile.read_text().split()
            if stop_process_group(int(pid_text), start):
                stopped.append(f"{pidfile.stem} (pid {pid_text})")
        except (OSError, ValueError):
            pass
        pidfile.unlink(missing_ok=True)
    return stopped


class LocalProcessProvider(ResourceProvider):
    """Starts a process detached in its own session; stops its process group on delete.

    Inputs: name, argv, env, files ({path: {content, mode}}, written before start; may be secret),
    run_dir (pidfile and log), ready ({kind: tcp|http, url}), ready_timeout_s. "{port}" in argv, env
    and files is replaced by a free port picked at create time.
    """

    def create(self, props: dict[str, Any]) -> CreateResult:
        port = free_port()

        def fill(text: str) -> str:
            return text.replace("{port}", str(port))

        run_dir = Path(props["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        for path, spec in (props.get("files") or {}).items():
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(spec.get("mode", "600"), 8))
            with os.fdopen(fd, "w") as fh:
                fh.write(fill(spec["content"]))
            os.chmod(p, int(spec.get("mode", "600"), 8))
        log = run_dir / f"{props['name']}.log"
        env = {**os.environ, **{k: fill(v) for k, v in (props.get("env") or {}).items()}}
        env["BENCHCTL_STACK_PROCESS"] = props["name"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [fill(a) for a in props["argv"]], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=str(run_dir), start_new_session=True, close_fds=True,
            )
        start = None
        for _ in range(100):  # /proc entry appears at once, but be patient on a loaded machine
            start = _start_time(proc.pid)
            if start:
                break
            time.sleep(0.01)
        (run_dir / f"{props['name']}.pid").write_text(f"{proc.pid} {start}")
        try:
            _wait_ready(props.get("ready") or {}, port, proc.pid, start, log, float(props.get("ready_timeout_s", 60)))
        except Exception:
            stop_process_group(proc.pid, start)
            (run_dir / f"{props['name']}.pid").unlink(missing_ok=True)
            raise
        # env and files may hold secrets (HF token, host key): outputs keep only their digests.
        outs = {k: v for k, v in props.items() if k not in ("files", "env")}
        outs.update(pid=proc.pid, start_time=start, port=port, log=str(log), digest=_digest(props),
                    file_paths=sorted((props.get("files") or {}).keys()))
        return CreateResult(id_=str(proc.pid), outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if alive(int(props.get("pid", 0) or 0), props.get("start_time")):
            return ReadResult(id_=id_, outs=props)
        return ReadResult(id_="", outs={})  # gone: refresh drops it from the state

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in ("argv", "ready", "run_dir") if olds.get(k) != news.get(k)]
        if olds.get("digest") != _digest(news):
            changed.append("env")
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        stop_process_group(int(props.get("pid", 0) or 0), props.get("start_time"))
        if props.get("workdir"):
            kill_processes_under(Path(props["workdir"]))
        run_dir = Path(props.get("run_dir", "."))
        (run_dir / f"{props.get('name')}.pid").unlink(missing_ok=True)
        for path in props.get("file_paths") or []:
            Path(path).unlink(missing_ok=True)


class LocalProcess(Resource):
    pid: pulumi.Output[int]
    port: pulumi.Output[int]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        outputs = {"pid": None, "port": None, "start_time": None, "log": None, "file_paths": None, "digest": None}
        super().__init__(LocalProcessProvider(), name, {**outputs, **props}, opts)


# ------------------------------------------------------------------------------------------ engines


def find_sshd(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).exists()), None)


def engine_argv(ctx: StackContext) -> tuple[list[str], dict[str, Any]]:
    """The model server's command line (with "{port}") and its readiness probe."""
    cfg = ctx.cfg
    engine = cfg.engine_name
    ready = {"kind": "http", "url": "http://127.0.0.1:{port}/v1/models"}
    if cfg.engine.command:
        import shlex

        return shlex.split(cfg.engine.command) + list(cfg.engine.args), ready
    if engine == "simulator":
        s = cfg.simulator
        argv = [sys.executable, "-m", "benchctl.simulator", "--host", "127.0.0.1", "--port", "{port}",
                "--model", cfg.model_name, "--ttft-base-ms", str(s.ttft_base_ms),
                "--prefill-ms-per-1k", str(s.prefill_ms_per_1k_tokens), "--itl-ms", str(s.itl_ms),
                "--itl-ms-per-running-seq", str(s.itl_ms_per_running_seq), "--max-running", str(s.max_running),
                "--tokens-per-chunk", str(s.tokens_per_chunk), "--fail-rate", str(s.fail_rate)]
        return argv + list(cfg.engine.args), ready
    model = cfg.model_name
    defaults = {
        "vllm": ["vllm", "serve", model, "--host", "127.0.0.1", "--port", "{port}"],
        "sglang": [sys.executable, "-m", "sglang.launch_server", "--model-path", model, "--host", "127.0.0.1",
                   "--port", "{port}"],
        "llamacpp": ["llama-server", "--hf-repo", model, "--host", "127.0.0.1", "--port", "{port}"],
        "ollama": ["ollama", "serve"],
        "tgi": ["text-generation-launcher", "--model-id", model, "--hostname", "127.0.0.1", "--port", "{port}"],
    }
    return defaults[engine] + list(cfg.engine.args), ready


def engine_env(ctx: StackContext) -> dict[str, Any]:
    env: dict[str, Any] = {}
    if ctx.cfg.engine_name == "ollama":
        env["OLLAMA_HOST"] = "127.0.0.1:{port}"
    if ctx.cfg.engine.hf_token is not None:
        env["HF_TOKEN"] = pulumi.Output.secret(ctx.cfg.engine.hf_token.get_secret_value())
    return env


def sshd_config(ctx: StackContext, run_dir: Path, user: str) -> str:
    sftp = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                             "/usr/libexec/sftp-server") if Path(p).exists()), "internal-sftp")
    return "\n".join([
        "Port {port}",
        f"ListenAddress {ctx.cfg.local.host}",
        f"HostKey {run_dir / 'ssh_host_ed25519_key'}",
        f"AuthorizedKeysFile {run_dir / 'authorized_keys'}",
        f"PidFile {run_dir / 'sshd.pidfile'}",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "UsePAM no",
        "StrictModes no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "PrintMotd no",
        "LogLevel ERROR",
        "ClientAliveInterval 15",
        f"Subsystem sftp {sftp}",
        "",
    ])


def program(ctx: StackContext) -> None:
    import getpass

    cfg = ctx.cfg
    run_dir = Path(ctx.state_dir)
    workdir = run_dir / "launcher-home"  # the launcher's files; everything running there dies with it
    user = getpass.getuser()

    argv, ready = engine_argv(ctx)
    server = LocalProcess("model-server", {
        "name": "model-server", "argv": argv, "env": engine_env(ctx), "files": {},
        "run_dir": str(run_dir), "ready": ready, "ready_timeout_s": cfg.engine.startup_timeout_s,
    })
    engine_url = server.port.apply(lambda p: f"http://127.0.0.1:{p}/v1")

    sshd = find_sshd(cfg.local.sshd_path) if cfg.local.ssh != "none" else None
    if cfg.local.ssh == "sshd" and sshd is None:
        raise RuntimeError("[local].ssh = 'sshd' but no sshd is installed (apt-get install openssh-server)")
    if sshd is not None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        files = {
            str(run_dir / "ssh_host_ed25519_key"): {"content": pulumi.Output.secret(ctx.host_key_private), "mode": "600"},
            str(run_dir / "ssh_host_ed25519_key.pub"): {"content": ctx.host_key_public + "\n", "mode": "644"},
            str(run_dir / "authorized_keys"): {"content": ctx.ssh_public_key + "\n", "mode": "600"},
            str(run_dir / "sshd_config"): {"content": sshd_config(ctx, run_dir, user), "mode": "600"},
        }
        launcher = LocalProcess("launcher-sshd", {
            "name": "launcher-sshd", "argv": [sshd, "-D", "-e", "-f", str(run_dir / "sshd_config")],
            "env": {}, "files": files, "run_dir": str(run_dir), "workdir": str(workdir),
            "ready": {"kind": "tcp", "host": cfg.local.host}, "ready_timeout_s": 30,
        })
        endpoint = Endpoint(host=cfg.local.host, port=launcher.port, user=user)
    else:
        pulumi.log.warn("sshd is not installed: the launcher step runs as a local process (no SSH)")
        endpoint = Endpoint(host="", port=0, user=user)

    export_outputs(ctx, server=endpoint, launcher=endpoint, engine_url=engine_url,
                   gpu_instance_type="local", launcher_instance_type="local", launcher_workdir=str(workdir))
