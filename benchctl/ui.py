"""What the user sees while long steps run: step headers, Pulumi resource progress, benchmark progress.

Everything goes to stderr, so stdout stays clean for `--json`. With `verbose`, Pulumi's raw output
lines are streamed instead of the condensed resource events.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class UI:
    def __init__(self, *, verbose: bool = False, quiet: bool = False) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._started: dict[str, float] = {}
        self._live = False

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        if self._live:
            sys.stderr.write("\r\033[K" if self.tty else "\n")
            self._live = False
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def step(self, name: str, detail: str = "") -> None:
        self._print(f"==> {name}{': ' + detail if detail else ''}")

    def info(self, text: str) -> None:
        self._print(f"    {text}")

    def warn(self, text: str) -> None:
        self._print(f"warning: {text}")

    # Pulumi -----------------------------------------------------------------------------------

    def pulumi_output(self, line: str) -> None:
        if self.verbose:
            self._print(f"    | {line.rstrip()}")

    def pulumi_event(self, event: Any) -> None:
        """Condensed resource progress from the Automation API's engine events."""
        if self.verbose:
            return
        pre, done, failed, diag = (event.resource_pre_event, event.res_outputs_event,
                                   event.res_op_failed_event, event.diagnostic_event)
        if pre is not None and not _internal(pre.metadata.type):
            urn = pre.metadata.urn
            self._started[urn] = time.monotonic()
            op = str(pre.metadata.op.value if hasattr(pre.metadata.op, "value") else pre.metadata.op)
            if op != "same":
                self.info(f"would {op} {_short(urn)}" if pre.planning else f"{op:<8} {_short(urn)} …")
        elif done is not None and not _internal(done.metadata.type) and not done.planning:
            urn = done.metadata.urn
            op = str(done.metadata.op.value if hasattr(done.metadata.op, "value") else done.metadata.op)
            took = time.monotonic() - self._started.pop(urn, time.monotonic())
            if op != "same":
                self.info(f"{op:<8} {_short(urn)} done ({took:.1f}s)")
        elif failed is not None:
            self.info(f"failed   {_short(failed.metadata.urn)}")
        elif diag is not None and diag.severity in ("warning", "error") and diag.message.strip():
            self._print(f"    {diag.severity}: {diag.message.strip()}")

    # benchmark ------------------------------------------------------------------------------------

    def progress(self, p: dict[str, Any]) -> None:
        if self.quiet:
            return
        total = p.get("total")
        done = f"{p.get('done', 0)}/{total}" if total else str(p.get("done", 0))
        text = (f"    point {int(p.get('point', 0)) + 1}/{p.get('points', '?')} {p.get('phase', '')}: "
                f"{done} requests, {float(p.get('rps') or 0):.1f} req/s, {p.get('errors', 0)} errors")
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
            self._live = True
        else:
            now = time.monotonic()
            if now - self._started.get("_progress", 0.0) >= 2.0 or p.get("phase") == "done":
                self._started["_progress"] = now
                self._print(text)


def _short(urn: str) -> str:
    """'urn:pulumi:stack::benchctl::aws:ec2/instance:Instance::gpu' -> 'aws:ec2/instance:Instance gpu'."""
    parts = urn.split("::")
    return f"{parts[-2].split('$')[-1]} {parts[-1]}" if len(parts) >= 2 else urn


def _internal(resource_type: str) -> bool:
    """The stack itself and default providers: noise in a progress display."""
    return resource_type == "pulumi:pulumi:Stack" or resource_type.startswith("pulumi:providers:")
