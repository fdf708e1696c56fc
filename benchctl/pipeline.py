"""The seed's workflow as library calls: create → connection → deploy → benchmark → results → destroy.

Every step reads only the stack outputs (the contract in stacks/common.py), so nothing here knows
which cloud it is on. `run` chains them and guarantees the teardown: on success, on error and on
Ctrl-C (SIGINT/SIGTERM), unless `keep`.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchctl import remote
from benchctl.automation import Driver
from benchctl.config import BenchConfig
from benchctl.errors import BenchmarkError, ProvisionError, RemoteError, StackLockedError
from benchctl.results import headline, new_run_id, results_root, write_run_info
from benchctl.ui import UI


class Pipeline:
    def __init__(self, cfg: BenchConfig, ui: UI | None = None) -> None:
        self.cfg = cfg
        self.ui = ui or UI()
        self.driver = Driver(cfg, on_output=self.ui.pulumi_output, on_event=self.ui.pulumi_event,
                             on_notice=self.ui.warn)
        self.runner_exit_code = 0

    # ------------------------------------------------------------------ steps

    def create(self) -> dict[str, Any]:
        self.ui.step("create", f"stack {self.driver.name!r} ({self.cfg.provider}, {self.cfg.engine_name})")
        outputs = self.driver.up()
        self.ui.info(f"engine at {outputs.get('engine_url')} (from the launcher); expires {outputs.get('expires_at')}")
        return outputs

    def outputs(self) -> dict[str, Any]:
        outputs = self.driver.outputs()
        if not outputs or outputs.get("status") != "running":
            raise RemoteError(f"stack {self.driver.name!r} is not up: run `benchctl create -c {self.cfg.source}` first")
        return outputs

    def launcher(self, outputs: dict[str, Any]) -> remote.Transport:
        host = remote.Host.from_outputs(outputs, "launcher")
        if not host.uses_ssh:
            self.ui.warn("no sshd on this machine: the launcher step runs as a local process, not over SSH")
            return remote.LocalTransport(Path(_workdir(outputs)))
        return remote.connect(host, outputs["ssh_private_key"], timeout=self._ssh_timeout(), on_wait=self.ui.info)

    def _ssh_timeout(self) -> float:
        return 60.0 if self.cfg.provider == "local" else 600.0

    def connection(self, outputs: dict[str, Any]) -> list[dict[str, Any]]:
        """SSH to every instance, verifying its pinned host key; returns one report per instance."""
        self.ui.step("connection", "SSH to every instance, host keys pinned")
        report: list[dict[str, Any]] = []
        for role in ("server", "launcher"):
            host = remote.Host.from_outputs(outputs, role)
            if not host.uses_ssh:
                report.append({"role": role, "endpoint": str(host), "ok": True, "transport": "local"})
                self.ui.info(f"{role}: {host}")
                continue
            start = time.monotonic()
            t = remote.connect(host, outputs["ssh_private_key"], timeout=self._ssh_timeout(), on_wait=self.ui.info)
            try:
                code, out, _ = t.run("uname -sm")
            finally:
                t.close()
            took = time.monotonic() - start
            report.append({"role": role, "endpoint": str(host), "ok": code == 0, "transport": "ssh",
                           "host_key_fingerprint": outputs.get(f"{role}_host_key_fingerprint"),
                           "system": out.strip(), "seconds": round(took, 3)})
            self.ui.info(f"{role}: {host} ok ({outputs.get(f'{role}_host_key_fingerprint')}, {took:.2f}s)")
        return report

    def deploy(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Ship the load generator to the launcher and wait until the engine answers from there."""
        self.ui.step("deploy", "ship the load generator, wait for the model server")
        t = self.launcher(outputs)
        try:
            version = remote.ensure_python(t)
            runner = remote.ship_runner(t, _workdir(outputs), self.cfg.bench_id)
            self.ui.info(f"runner shipped to {t.label} (python {version})")
            models = remote.wait_engine(t, _workdir(outputs), outputs["engine_url"], self.cfg.engine.startup_timeout_s)
        finally:
            t.close()
        self.ui.info(f"model server ready: {', '.join(models) or '(no models listed)'}")
        return {"launcher": t.label, "python": version, "runner": runner, "models": models}

    def spec(self, outputs: dict[str, Any]) -> dict[str, Any]:
        b = self.cfg.benchmark
        return {
            "target": outputs["engine_url"], "model": outputs.get("model") or self.cfg.model_name,
            "api": b.api, "concurrency": b.concurrency_list(), "rate": b.rate_list(), "arrival": b.arrival,
            "requests": b.requests, "duration_s": b.duration_s, "warmup": b.warmup,
            "input_tokens": b.input_tokens, "output_tokens": b.output_tokens, "dataset": b.dataset,
            "slo": dict(b.slo), "timeout_s": b.timeout_s, "max_error_rate": b.max_error_rate,
            "seed": b.seed, "engine": self.cfg.engine_name,
        }

    def benchmark(self, outputs: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        """Run the load test detached on the launcher, follow it, fetch its files. Returns (dir, summary)."""
        run_id = new_run_id()
        self.ui.step("benchmark", f"run {run_id} from the launcher against {outputs['engine_url']}")
        t = self.launcher(outputs)
        workdir = _workdir(outputs)
        runner = remote.ship_runner(t, workdir, self.cfg.bench_id)
        spec = self.spec(outputs)
        if self.cfg.benchmark.dataset:
            data = Path(self.cfg.project_dir, self.cfg.benchmark.dataset).read_bytes()
            t.write(f"{workdir}/{self.cfg.bench_id}/dataset", data)
            spec["dataset"] = "../dataset"
        run = remote.start_benchmark(t, workdir, self.cfg.bench_id, run_id, spec, runner)
        dest = results_root(self.cfg.project_dir, self.cfg.bench_id) / run_id
        try:
            t, code = remote.follow(t, run, on_progress=self.ui.progress, reconnect=lambda: self.launcher(outputs),
                                    on_notice=self.ui.warn)
        except BaseException:
            self._stop_quietly(outputs, run)
            raise
        try:
            files = remote.fetch_results(t, run, dest)
            write_run_info(dest, outputs)
        except OSError as exc:
            raise BenchmarkError(f"cannot write the results to {dest}: {exc.strerror or exc}; they stay in "
                                 f"{run.dir} on the launcher until it is destroyed") from None
        finally:
            t.close()
        summary = json.loads(files["summary.json"].read_text()) if "summary.json" in files else None
        if summary is None:
            log = files.get("runner.log")
            tail = log.read_text(errors="replace")[-1500:] if log else ""
            raise BenchmarkError(f"the benchmark produced no summary (exit code {code}); runner log:\n{tail}")
        self.ui.info(f"results saved in {dest}")
        self.runner_exit_code = code
        if code != 0:
            self.ui.warn(f"the load generator exited with code {code} (see {dest / 'runner.log'})")
        return dest, summary

    def check_results_writable(self) -> None:
        """Fail before creating anything (and paying for a GPU) when the results cannot be saved."""
        root = results_root(self.cfg.project_dir, self.cfg.bench_id)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".write-test"
            probe.write_bytes(b"x" * 65536)
            probe.unlink()
        except OSError as exc:
            raise BenchmarkError(f"cannot write the results to {root}: {exc.strerror or exc}; "
                                 "nothing was created") from None

    def _stop_quietly(self, outputs: dict[str, Any], run: remote.RemoteRun) -> None:
        try:
            t = self.launcher(outputs)
            remote.stop_benchmark(t, run)
            t.close()
            self.ui.info("stopped the benchmark on the launcher")
        except Exception as exc:  # best effort: the teardown that follows kills the launcher anyway
            self.ui.warn(f"could not stop the benchmark on the launcher: {exc}")

    def record(self, directory: Path, summary: dict[str, Any]) -> dict[str, Any]:
        """Record the headline numbers as stack outputs (an `up` whose program exports them)."""
        self.ui.step("results", "recording the headline numbers as stack outputs")
        head = headline(summary, directory.name, directory)
        self.driver.up(results=head)
        return head

    def destroy(self, *, patience_s: float = 120.0) -> dict[str, Any]:
        """Destroy the stack; during a teardown, wait out our own interrupted update and retry once.

        After Ctrl-C the terminal's SIGINT also reached the Pulumi CLI, which cancels its update and
        releases the lock a moment later; a cancelled destroy is simply run again.
        """
        self.ui.step("destroy", f"stack {self.driver.name!r}")
        deadline = time.monotonic() + patience_s
        retried = False
        while True:
            try:
                report = self.driver.destroy()
                break
            except StackLockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
            except ProvisionError as exc:
                if retried:
                    raise
                retried = True
                self.ui.warn(f"destroy failed, retrying once: {exc}")
        if not report["existed"]:
            self.ui.info("nothing to destroy")
        for item in report["cleared_pending"]:
            self.ui.info(f"cleared a pending operation left by a killed run: {item}")
        for item in report["orphans_stopped"]:
            self.ui.info(f"stopped a process the state had lost: {item}")
        return report

    # ------------------------------------------------------------------ everything

    def run(self, *, keep: bool = False) -> dict[str, Any]:
        """create → connection → deploy → benchmark → results → destroy (unless keep)."""
        self.check_results_writable()
        # Import Pulumi and build the workspace before Ctrl-C can land: an interrupt in the middle of
        # `import pulumi` would leave a half-imported module that the teardown could not use.
        self.driver.workspace()
        ok = False
        try:
            with _signals_raise_interrupt():
                outputs = self.create()
                self.connection(outputs)
                self.deploy(outputs)
                directory, summary = self.benchmark(outputs)
                head = self.record(directory, summary)
                ok = True
                if self.runner_exit_code != 0:
                    # Kept and recorded, but the run failed: error threshold, or a client-bound --strict.
                    why = "; ".join(summary.get("failures") or []) or f"load generator exit code {self.runner_exit_code}"
                    raise BenchmarkError(f"the benchmark failed: {why}; partial results are in {directory}")
                return {"results_dir": str(directory), "headline": head, "summary": summary}
        except KeyboardInterrupt:
            self.ui.warn("interrupted" + ("" if keep else ": tearing everything down"))
            raise
        finally:
            if keep:
                if ok:
                    self.ui.info(f"kept stack {self.driver.name!r}: `benchctl destroy -c {self.cfg.source}` when done")
            else:
                with _signals_raise_interrupt(ignore=True):
                    self.destroy()


def _workdir(outputs: dict[str, Any]) -> str:
    return str(outputs.get("launcher_workdir") or remote.DEFAULT_WORKDIR)


@contextmanager
def _signals_raise_interrupt(ignore: bool = False) -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (so the teardown runs); while tearing down, both are ignored."""
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    handler = signal.SIG_IGN if ignore else raise_interrupt
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
