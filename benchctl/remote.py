"""The post-deploy step over SSH (paramiko), the same for every provider.

Wait for SSH with backoff; verify the host key against the one the stack recorded (never
AutoAddPolicy); ship the load generator; wait for the model server from the launcher; run the
benchmark detached (an SSH drop does not kill it); follow its progress, reattaching after a drop;
fetch the result files over SFTP.

The load generator is stdlib-only, so it ships as one zipapp (`runner.pyz`) that any python3 >= 3.10
runs: nothing to install on a bare Ubuntu launcher, no pip, no internet.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from benchctl.errors import BenchmarkError, RemoteError

DEFAULT_WORKDIR = ".benchctl"  # on the launcher, relative to the user's home; stacks may export another


@dataclass(frozen=True)
class Host:
    """One instance as the stack outputs describe it."""

    role: str
    host: str
    port: int
    user: str
    host_key: str  # public key line the instance must present

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any], role: str) -> Host:
        try:
            return cls(role=role, host=outputs[f"{role}_host"], port=int(outputs[f"{role}_ssh_port"]),
                       user=outputs[f"{role}_ssh_user"], host_key=outputs[f"{role}_host_key"])
        except KeyError as exc:
            raise RemoteError(f"the stack has no output {exc}: run `benchctl create` first") from None

    @property
    def uses_ssh(self) -> bool:
        return bool(self.host) and self.port > 0

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}" if self.uses_ssh else "local launcher (no SSH)"


class Transport(Protocol):
    label: str

    def run(self, command: str, timeout: float = 60) -> tuple[int, str, str]: ...
    def write(self, path: str, data: bytes, mode: int = 0o644) -> None: ...
    def read(self, path: str, offset: int = 0) -> bytes | None: ...
    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------ SSH


class SshTransport:
    def __init__(self, client: Any, host: Host) -> None:
        self.client = client
        self.label = str(host)
        self._sftp: Any = None

    @property
    def sftp(self) -> Any:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def run(self, command: str, timeout: float = 60) -> tuple[int, str, str]:
        try:
            _, stdout, stderr = self.client.exec_command(command, timeout=timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            return stdout.channel.recv_exit_status(), out, err
        except (TimeoutError, EOFError, OSError, _ssh_exceptions()) as exc:
            raise RemoteError(f"{self.label}: `{command[:60]}` failed: {exc or type(exc).__name__}") from None

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        with self.sftp.open(path, "wb") as fh:
            fh.write(data)
        self.sftp.chmod(path, mode)

    def read(self, path: str, offset: int = 0) -> bytes | None:
        try:
            with self.sftp.open(path, "rb") as fh:
                fh.seek(offset)
                return bytes(fh.read())
        except FileNotFoundError:
            return None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection must not mask the real error
            self.client.close()


def _pinned_client(host: Host) -> Any:
    """A paramiko client that knows only the stack's host key and rejects anything else."""
    import paramiko

    client = paramiko.SSHClient()
    keytype, blob = host.host_key.split()[:2]
    name = host.host if host.port == 22 else f"[{host.host}]:{host.port}"
    client.get_host_keys().add(name, keytype, paramiko.PKey.from_type_string(keytype, __import__("base64").b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def connect(host: Host, private_key_pem: str, *, timeout: float = 300.0,
            on_wait: Callable[[str], None] | None = None) -> Transport:
    """Connect over SSH, retrying with backoff until `timeout`; a wrong host key fails at once."""
    if not host.uses_ssh:
        raise RemoteError("this instance has no SSH endpoint")
    import paramiko

    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(private_key_pem))
    deadline = time.monotonic() + timeout
    delay = 0.25
    last = ""
    while True:
        client = _pinned_client(host)
        try:
            client.connect(host.host, port=host.port, username=host.user, pkey=pkey, timeout=10,
                           banner_timeout=10, auth_timeout=10, allow_agent=False, look_for_keys=False)
            client.get_transport().set_keepalive(15)
            return SshTransport(client, host)
        except paramiko.BadHostKeyException as exc:
            client.close()
            from stacks.common import fingerprint

            got = f"{exc.key.get_name()} {exc.key.get_base64()}"
            raise RemoteError(
                f"{host.role} {host}: host key mismatch: expected {fingerprint(host.host_key)}, got "
                f"{fingerprint(got)}. Refusing to connect (someone may be in the middle)."
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise RemoteError(f"{host.role} {host}: unknown host key, refusing to connect") from None
            last = str(exc)
        except (OSError, EOFError) as exc:
            client.close()
            last = str(exc) or type(exc).__name__
        if time.monotonic() + delay > deadline:
            raise RemoteError(f"{host.role} {host}: SSH not reachable after {timeout:.0f}s ({last})")
        if on_wait:
            on_wait(f"waiting for SSH on {host.role} {host} ({last})")
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


# ------------------------------------------------------------------------------------------ local


class LocalTransport:
    """The launcher as a plain local process, when the local stack has no sshd. Clearly labelled."""

    label = "local launcher (no SSH)"

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def run(self, command: str, timeout: float = 60) -> tuple[int, str, str]:
        proc = subprocess.run(["bash", "-c", command], cwd=self.home, env={"HOME": str(self.home),
                              "PATH": "/usr/local/bin:/usr/bin:/bin"}, capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        p = self.home / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)

    def read(self, path: str, offset: int = 0) -> bytes | None:
        p = self.home / path
        try:
            with p.open("rb") as fh:
                fh.seek(offset)
                return fh.read()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------ steps


def runner_zipapp() -> bytes:
    """benchctl's load generator as one executable zip (stdlib only; runs with any python3 >= 3.10)."""
    import zipapp

    import benchctl

    pkg = Path(benchctl.__file__).parent
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        (src / "benchctl" / "load").mkdir(parents=True)
        (src / "benchctl" / "__init__.py").write_bytes((pkg / "__init__.py").read_bytes())
        for f in (pkg / "load").glob("*.py"):
            (src / "benchctl" / "load" / f.name).write_bytes(f.read_bytes())
        (src / "__main__.py").write_text(
            "import sys\nfrom benchctl.load.runner import main\nsys.exit(main())\n"
        )
        out = Path(tmp) / "runner.pyz"
        zipapp.create_archive(src, out, interpreter="/usr/bin/env python3")
        return out.read_bytes()


READY_PROBE = r"""
import json, sys, time, urllib.request
url, deadline = sys.argv[1].rstrip('/') + '/models', time.time() + float(sys.argv[2])
last = ''
while time.time() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            ids = [m.get('id') for m in json.load(r).get('data', [])]
            print(json.dumps({'ready': True, 'models': ids})); sys.exit(0)
    except Exception as e:
        last = str(e)
    time.sleep(2)
print(json.dumps({'ready': False, 'error': last})); sys.exit(1)
"""


def ensure_python(t: Transport) -> str:
    code, out, err = t.run("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    if code != 0:
        raise RemoteError(f"{t.label}: python3 is missing on the launcher ({err.strip()[:200]})")
    version = out.strip()
    major, minor = (int(x) for x in version.split("."))
    if (major, minor) < (3, 10):
        raise RemoteError(f"{t.label}: the launcher has python {version}; benchctl's runner needs >= 3.10")
    return version


def ship_runner(t: Transport, workdir: str, bench_id: str) -> str:
    """Upload runner.pyz into the launcher's work dir; returns its path."""
    base = f"{workdir}/{bench_id}"
    code, _, err = t.run(f"mkdir -p {shlex.quote(base)}")
    if code != 0:
        raise RemoteError(f"{t.label}: cannot create {base}: {err.strip()[:200]}")
    path = f"{base}/runner.pyz"
    t.write(path, runner_zipapp(), 0o755)
    return path


def wait_engine(t: Transport, workdir: str, engine_url: str, timeout: float) -> list[str]:
    """Poll the engine's /v1/models from the launcher (the path the benchmark will use)."""
    t.run(f"mkdir -p {shlex.quote(workdir)}")
    t.write(f"{workdir}/ready_probe.py", READY_PROBE.encode())
    code, out, err = t.run(f"python3 {shlex.quote(workdir)}/ready_probe.py {shlex.quote(engine_url)} {timeout:.0f}",
                           timeout=timeout + 30)
    try:
        answer = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = {"ready": False, "error": (err or out).strip()[-300:]}
    if code != 0 or not answer.get("ready"):
        raise RemoteError(f"the model server at {engine_url} did not answer /v1/models from the launcher "
                          f"within {timeout:.0f}s: {answer.get('error')}")
    return list(answer.get("models") or [])


@dataclass
class RemoteRun:
    """A benchmark running detached on the launcher, in `dir` (relative to home)."""

    dir: str
    runner: str


def start_benchmark(t: Transport, workdir: str, bench_id: str, run_id: str, spec: dict[str, Any], runner: str,
                    api_key: str | None = None) -> RemoteRun:
    """Start the runner detached (setsid + nohup): it outlives this SSH session."""
    run_dir = f"{workdir}/{bench_id}/{run_id}"
    t.run(f"mkdir -p {shlex.quote(run_dir)}/out")
    t.write(f"{run_dir}/spec.json", json.dumps(spec, indent=2).encode(), 0o600)
    env = ""
    if api_key:
        t.write(f"{run_dir}/api_key", api_key.encode(), 0o600)
        env = 'BENCHCTL_API_KEY="$(cat api_key)" '
    inner = (f"echo $$ > pid; {env}python3 ../runner.pyz --spec spec.json --out out --quiet "
             f"> runner.log 2>&1; echo $? > exit_code")
    # The whole background job has its fds on /dev/null: anything holding the SSH channel's pipes
    # would keep this command (and the channel) open until the benchmark ends.
    command = (f"( cd {shlex.quote(run_dir)} && exec setsid nohup sh -c {shlex.quote(inner)} ) "
               f"> /dev/null 2>&1 < /dev/null &")
    code, _, err = t.run(command)
    if code != 0:
        raise RemoteError(f"{t.label}: could not start the benchmark: {err.strip()[:300]}")
    return RemoteRun(dir=run_dir, runner=runner)


def follow(t: Transport, run: RemoteRun, *, on_progress: Callable[[dict[str, Any]], None] | None = None,
           reconnect: Callable[[], Transport] | None = None, poll_s: float = 0.5,
           timeout: float = 24 * 3600, on_notice: Callable[[str], None] | None = None) -> tuple[Transport, int]:
    """Follow progress.jsonl until the runner exits; after an SSH drop, reconnect and carry on.

    Returns the (possibly new) transport and the runner's exit code.
    """
    offset = 0
    buffer = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = t.read(f"{run.dir}/out/progress.jsonl", offset)
            if chunk:
                offset += len(chunk)
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if lines and on_progress:
                    with contextlib.suppress(ValueError):
                        on_progress(json.loads(lines[-1]))
            code = t.read(f"{run.dir}/exit_code")
            if code is not None and code.strip():
                return t, int(code.strip())
        except (TimeoutError, OSError, EOFError, _ssh_exceptions()) as exc:
            if reconnect is None:
                raise RemoteError(f"{t.label}: lost the connection while following the benchmark: {exc}") from None
            if on_notice:
                on_notice(f"connection to the launcher lost ({exc or type(exc).__name__}); the benchmark "
                          "continues there; reattaching…")
            t.close()
            t = reconnect()
            if on_notice:
                on_notice("reattached to the launcher")
            continue
        time.sleep(poll_s)
    raise BenchmarkError(f"the benchmark did not finish within {timeout:.0f}s; it is still in {run.dir} on the launcher")


def _ssh_exceptions() -> type[BaseException]:
    import paramiko

    return paramiko.SSHException


def stop_benchmark(t: Transport, run: RemoteRun) -> None:
    """Stop a detached runner (its whole process group)."""
    t.run(f"cd {shlex.quote(run.dir)} 2>/dev/null && [ -f pid ] && kill -TERM -- -$(cat pid) 2>/dev/null; true",
          timeout=20)


RESULT_FILES = ("summary.json", "requests.jsonl")


def fetch_results(t: Transport, run: RemoteRun, dest: Path) -> dict[str, Path]:
    """Copy the result files (and the runner's log) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    got: dict[str, Path] = {}
    for name in (*RESULT_FILES, "progress.jsonl"):
        data = t.read(f"{run.dir}/out/{name}")
        if data is not None:
            (dest / name).write_bytes(data)
            got[name] = dest / name
    log = t.read(f"{run.dir}/runner.log")
    if log:
        (dest / "runner.log").write_bytes(log)
        got["runner.log"] = dest / "runner.log"
    return got
